//! The catalogue of secret formats.
//!
//! Each format has a stable id (the `[REDACTED:<id>]` label and the metrics
//! `kind`), one or more literal prefixes that go into a single aho-corasick
//! automaton, and a rule that decides, from the bytes after the prefix,
//! whether this is a secret and which bytes to redact.

/// Byte classes for secret tails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `[A-Za-z0-9]`
    Base62,
    /// `[A-Za-z0-9_-]`
    Base64Url,
    /// `[A-Za-z0-9+/=]`
    Base64,
    /// `[0-9a-fA-F]`
    Hex,
    /// `[A-Z0-9]`
    UpperAlnum,
    /// `[A-Za-z0-9_]`
    Word,
    /// `[A-Za-z0-9-]`
    AlnumDash,
    /// RFC 7235 token68: `[A-Za-z0-9-._~+/]` then `=`s.
    Token68,
    /// `[A-Za-z0-9/]` (webhook paths).
    PathAlnum,
    /// `[A-Za-z0-9._-]`
    DotToken,
}

impl Charset {
    #[inline]
    pub fn contains(self, b: u8) -> bool {
        let alnum = b.is_ascii_alphanumeric();
        match self {
            Charset::Base62 => alnum,
            Charset::Base64Url => alnum || b == b'-' || b == b'_',
            Charset::Base64 => alnum || b == b'+' || b == b'/' || b == b'=',
            Charset::Hex => b.is_ascii_hexdigit(),
            Charset::UpperAlnum => b.is_ascii_uppercase() || b.is_ascii_digit(),
            Charset::Word => alnum || b == b'_',
            Charset::AlnumDash => alnum || b == b'-',
            Charset::Token68 => alnum || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'='),
            Charset::PathAlnum => alnum || b == b'/',
            Charset::DotToken => alnum || matches!(b, b'.' | b'_' | b'-'),
        }
    }
}

/// Extra validation of a tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    None,
    /// GitHub and npm: the last 6 characters are the base62 CRC32 of the
    /// 30 before them. Redacted either way; counted as verified when valid.
    Crc32Base62,
    /// `Basic` credentials: base64 that decodes to printable `user:pass`.
    BasicAuth,
}

/// How a candidate is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Prefix, then `min..=max` bytes of `charset`, then a byte outside it.
    /// With `keep_prefix`, only the tail is replaced.
    Tail { charset: Charset, min: usize, max: usize, check: Check, keep_prefix: bool },
    /// Keyword, then up to 6 separators (`"' :=`), then a value of
    /// `charset` with `min..=max` bytes. Only the value is replaced.
    Keyword { charset: Charset, min: usize, max: usize },
    /// `eyJ…` header `.` payload `.` signature, base64url.
    Jwt,
    /// `://user:password@`: the userinfo is replaced.
    UrlUserinfo,
    /// `<8-10 digits>:AA<33 chars>`; the prefix is `:AA`.
    TelegramBot,
    /// `-----BEGIN … PRIVATE KEY-----` through the matching END line, streamed.
    PemPrivateKey,
    /// An exact literal (vault echoes).
    Literal,
}

/// One secret format.
#[derive(Debug, Clone)]
pub struct Format {
    pub id: &'static str,
    pub prefixes: &'static [&'static str],
    pub rule: Rule,
    /// The byte before the prefix must not be a word character (or `-`, `/`, `+`).
    pub boundary: bool,
}

const fn tail(charset: Charset, min: usize, max: usize) -> Rule {
    Rule::Tail { charset, min, max, check: Check::None, keep_prefix: false }
}

const fn f(id: &'static str, prefixes: &'static [&'static str], rule: Rule) -> Format {
    Format { id, prefixes, rule, boundary: true }
}

/// The built-in catalogue.
pub fn builtin() -> Vec<Format> {
    use Charset::*;
    let gh = Rule::Tail { charset: Base62, min: 36, max: 36, check: Check::Crc32Base62, keep_prefix: false };
    vec![
        f("github_pat", &["ghp_"], gh),
        f("github_oauth", &["gho_"], gh),
        f("github_user_to_server", &["ghu_"], gh),
        f("github_server_to_server", &["ghs_"], gh),
        f("github_refresh", &["ghr_"], gh),
        f("github_fine_grained_pat", &["github_pat_"], tail(Word, 82, 82)),
        f("gitlab_pat", &["glpat-"], tail(Base64Url, 20, 64)),
        f("gitlab_runner_token", &["glrt-"], tail(Base64Url, 20, 64)),
        f("slack_token", &["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-", "xoxe.xoxp-"], tail(AlnumDash, 10, 250)),
        f("slack_app_token", &["xapp-"], tail(AlnumDash, 20, 250)),
        f("slack_webhook", &["https://hooks.slack.com/services/", "https://hooks.slack.com/workflows/"], tail(PathAlnum, 20, 120)),
        f("aws_access_key_id", &["AKIA", "ASIA", "ABIA", "ACCA"], tail(UpperAlnum, 16, 16)),
        f(
            "aws_secret_access_key",
            &["aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "SecretAccessKey", "secretAccessKey", "aws_secret_key", "AWS_SECRET_KEY"],
            Rule::Keyword { charset: Base64, min: 40, max: 40 },
        ),
        f("google_api_key", &["AIza"], tail(Base64Url, 35, 35)),
        f("google_oauth_token", &["ya29."], tail(Base64Url, 20, 2048)),
        f("stripe_live_secret", &["sk_live_"], tail(Base62, 16, 247)),
        f("stripe_test_secret", &["sk_test_"], tail(Base62, 16, 247)),
        f("stripe_restricted_key", &["rk_live_", "rk_test_"], tail(Base62, 16, 247)),
        f("stripe_webhook_secret", &["whsec_"], tail(Base62, 24, 64)),
        f("anthropic_api_key", &["sk-ant-"], tail(Base64Url, 32, 200)),
        f("openai_api_key", &["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-"], tail(Base64Url, 20, 200)),
        f("huggingface_token", &["hf_"], tail(Base62, 30, 40)),
        f("npm_token", &["npm_"], Rule::Tail { charset: Base62, min: 36, max: 36, check: Check::Crc32Base62, keep_prefix: false }),
        f("pypi_token", &["pypi-AgEIcHlwaS5vcmc", "pypi-AgENdGVzdC5weXBpLm9yZw"], tail(Base64Url, 40, 400)),
        f("twilio_api_key", &["SK"], tail(Hex, 32, 32)),
        f("sendgrid_api_key", &["SG."], tail(DotToken, 66, 69)),
        f("shopify_token", &["shpat_", "shpca_", "shppa_", "shpss_"], tail(Hex, 32, 32)),
        f("vault_service_token", &["hvs."], tail(Base64Url, 24, 255)),
        f("vault_batch_token", &["hvb."], tail(Base64Url, 24, 512)),
        f("grafana_cloud_token", &["glc_"], tail(Base64, 32, 400)),
        f("grafana_service_account_token", &["glsa_"], tail(Word, 32, 64)),
        f("sentry_org_token", &["sntrys_"], tail(Base64, 40, 400)),
        f("sentry_user_token", &["sntryu_"], tail(Hex, 64, 64)),
        f("digitalocean_token", &["dop_v1_", "doo_v1_", "dor_v1_"], tail(Hex, 64, 64)),
        f("doppler_token", &["dp.pt.", "dp.st.", "dp.ct.", "dp.sa.", "dp.scim.", "dp.audit."], tail(Base62, 40, 44)),
        f("linear_api_key", &["lin_api_"], tail(Base62, 40, 40)),
        f("databricks_token", &["dapi"], tail(Hex, 32, 32)),
        f("postman_api_key", &["PMAK-"], tail(AlnumDash, 59, 59)),
        f("atlassian_api_token", &["ATATT3"], tail(Token68, 100, 300)),
        f("telegram_bot_token", &[":AA"], Rule::TelegramBot),
        f("mailgun_api_key", &["key-"], tail(Hex, 32, 32)),
        f("square_token", &["sq0atp-", "sq0csp-"], tail(Base64Url, 22, 80)),
        f("pulumi_token", &["pul-"], tail(Hex, 40, 40)),
        f("newrelic_user_key", &["NRAK-"], tail(UpperAlnum, 27, 27)),
        f("age_secret_key", &["AGE-SECRET-KEY-1"], tail(UpperAlnum, 58, 58)),
        f("dynatrace_token", &["dt0c01."], tail(DotToken, 80, 100)),
        f("flyio_token", &["fo1_", "FlyV1 fm2_"], tail(Token68, 40, 2048)),
        f("alibaba_access_key_id", &["LTAI"], tail(Base62, 20, 24)),
        f("azure_storage_key", &["AccountKey="], Rule::Keyword { charset: Base64, min: 86, max: 88 }),
        f("jwt", &["eyJ"], Rule::Jwt),
        f("private_key", &["-----BEGIN "], Rule::PemPrivateKey),
        Format { id: "url_credentials", prefixes: &["://"], rule: Rule::UrlUserinfo, boundary: false },
        Format {
            id: "bearer_token",
            prefixes: &["Bearer ", "bearer ", "BEARER "],
            rule: Rule::Tail { charset: Token68, min: 16, max: 4096, check: Check::None, keep_prefix: true },
            boundary: true,
        },
        Format {
            id: "basic_auth",
            prefixes: &["Basic ", "basic "],
            rule: Rule::Tail { charset: Base64, min: 8, max: 1024, check: Check::BasicAuth, keep_prefix: true },
            boundary: true,
        },
    ]
}
