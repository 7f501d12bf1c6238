//! Catalogue vectors, near misses, vault echoes, chunk-split invariance.
//! Every secret here is generated at test time; none is a real credential.

use super::catalogue::{builtin, Charset, Check, Rule};
use super::secrets::crc32_base62;
use super::*;
use proptest::prelude::*;

/// A deterministic filler from `charset`, `n` bytes, varied by `seed`.
fn fill(charset: Charset, n: usize, seed: u64) -> String {
    let alphabet: Vec<u8> = (0u8..=127).filter(|b| charset.contains(*b) && *b != b'=' && *b != b'.').collect();
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            alphabet[((x >> 33) as usize) % alphabet.len()] as char
        })
        .collect()
}

fn github_like(prefix: &str, seed: u64, valid: bool) -> String {
    let entropy = fill(Charset::Base62, 30, seed);
    let mut sum = crc32_base62(entropy.as_bytes());
    if !valid {
        sum[5] = if sum[5] == b'a' { b'b' } else { b'a' };
    }
    format!("{prefix}{entropy}{}", String::from_utf8_lossy(&sum))
}

fn jwt(seed: u64) -> String {
    let h = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = b64(format!(r#"{{"sub":"user-{seed}","iat":1700000000}}"#).as_bytes());
    format!("{h}.{p}.{}", fill(Charset::Base64Url, 43, seed))
}

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

/// One positive example per format (the secret, as it would appear in text).
fn positive(id: &str, seed: u64) -> String {
    let fmt = builtin().into_iter().find(|f| f.id == id).expect("format");
    let prefix = fmt.prefixes[(seed as usize) % fmt.prefixes.len()];
    match fmt.rule {
        Rule::Tail { check: Check::Crc32Base62, .. } => github_like(prefix, seed, true),
        Rule::Tail { check: Check::BasicAuth, .. } => {
            format!("{prefix}{}", base64::engine::general_purpose::STANDARD.encode(format!("user{seed}:pw-{seed}-x")))
        }
        Rule::Tail { charset, min, max, .. } => format!("{prefix}{}", fill(charset, (min + max) / 2, seed)),
        Rule::Keyword { charset, min, .. } => {
            let mut v = fill(charset, min, seed);
            if id == "azure_storage_key" {
                v.truncate(86);
                v.push_str("==");
            }
            format!("{prefix}=\"{v}\"")
        }
        Rule::Jwt => jwt(seed),
        Rule::UrlUserinfo => format!("https://deploy:pw{seed}x@example.com/x"),
        Rule::TelegramBot => format!("{}:AA{}", 100000000 + seed, fill(Charset::Base64Url, 33, seed)),
        Rule::PemPrivateKey => format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n{}\n-----END RSA PRIVATE KEY-----",
            fill(Charset::Base64, 64, seed),
            fill(Charset::Base64, 40, seed + 1)
        ),
        Rule::Literal => unreachable!("no literal formats in the catalogue"),
    }
}

/// Near misses per format: same prefix, but not a secret.
fn negatives(id: &str, seed: u64) -> Vec<String> {
    let fmt = builtin().into_iter().find(|f| f.id == id).expect("format");
    let prefix = fmt.prefixes[0];
    match fmt.rule {
        Rule::Tail { charset, min, .. } if min > 1 => vec![
            format!("{prefix}{}", fill(charset, min - 1, seed)),
            // glued to a preceding word: not a token boundary
            format!("x{}", positive(id, seed)).replace(' ', ""),
        ]
        .into_iter()
        .filter(|s| fmt.boundary || !s.starts_with('x'))
        .collect(),
        Rule::Keyword { charset, min, .. } => {
            vec![format!("{prefix}=\"{}\"", fill(charset, min - 5, seed))]
        }
        Rule::Jwt => vec!["eyJhbGciOi.short".into(), format!("{}.{}", b64(b"{\"a\":1}"), "eyJzdWIiOiIxIn0")],
        Rule::UrlUserinfo => vec!["https://example.com/a@b".into(), "mailto://user@example.com".into(), "https://user@example.com/".into()],
        Rule::TelegramBot => vec![format!("12345:AA{}", fill(Charset::Base64Url, 33, seed)), "time 12345678:AAbc".into()],
        Rule::PemPrivateKey => {
            vec!["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----".into(), "-----BEGIN PUBLIC KEY-----".into()]
        }
        _ => vec![],
    }
}

fn sanitizer() -> Sanitizer {
    Sanitizer::new(["vault-echo-secret-value-42"]).expect("sanitizer")
}

#[test]
fn the_catalogue_has_at_least_40_formats_with_unique_ids() {
    let ids: Vec<&str> = builtin().iter().map(|f| f.id).collect();
    assert!(ids.len() >= 40, "{} formats", ids.len());
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "duplicate ids");
    for id in ids {
        assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{id}: JSON-safe label");
    }
}

#[test]
fn every_format_redacts_its_positives_and_spares_its_near_misses() {
    let s = sanitizer();
    for fmt in builtin() {
        for seed in 0..3u64 {
            let secret = positive(fmt.id, seed);
            let text = format!("before {secret} after");
            let (out, counts) = s.sanitize_all(text.as_bytes());
            let out = String::from_utf8(out).expect("utf-8");
            assert!(out.contains(&format!("[REDACTED:{}]", fmt.id)), "{}: {text:?} → {out:?}", fmt.id);
            assert!(out.starts_with("before ") && out.ends_with(" after"), "{}: {out:?}", fmt.id);
            assert_eq!(counts.by_kind, vec![(fmt.id, 1)], "{}: {text:?}", fmt.id);
            for neg in negatives(fmt.id, seed) {
                let t = format!("before {neg} after");
                let (out, counts) = s.sanitize_all(t.as_bytes());
                assert_eq!(String::from_utf8(out).expect("utf-8"), t, "{}: near miss redacted", fmt.id);
                assert_eq!(counts.total_redactions(), 0);
            }
        }
    }
}

#[test]
fn github_checksums_count_as_verified() {
    let s = sanitizer();
    let (_, c) = s.sanitize_all(github_like("ghp_", 7, true).as_bytes());
    assert_eq!((c.total_redactions(), c.verified), (1, 1));
    let (out, c) = s.sanitize_all(github_like("ghp_", 7, false).as_bytes());
    assert_eq!((c.total_redactions(), c.verified), (1, 0), "a bad checksum is still redacted");
    assert_eq!(out, b"[REDACTED:github_pat]");
}

#[test]
fn prefix_kept_for_bearer_basic_and_keywords() {
    let s = sanitizer();
    let (out, _) = s.sanitize_all(b"Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345");
    assert_eq!(out, b"Authorization: Bearer [REDACTED:bearer_token]");
    let (out, _) = s.sanitize_all(b"https://ci:hunter2hunter2@git.example.com/repo.git");
    assert_eq!(out, b"https://[REDACTED:url_credentials]@git.example.com/repo.git");
    let key = fill(Charset::Base64, 40, 1);
    let (out, _) = s.sanitize_all(format!("aws_secret_access_key = {key}\n").as_bytes());
    assert_eq!(out, b"aws_secret_access_key = [REDACTED:aws_secret_access_key]\n");
}

#[test]
fn near_misses_in_the_wild_are_untouched() {
    let s = sanitizer();
    let image = base64::engine::general_purpose::STANDARD.encode((0..6000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<u8>>());
    for text in [
        "commit 3f786850e387550fdab836ed7e6dc881de23001b".to_owned(),
        "id 123e4567-e89b-12d3-a456-426614174000".to_owned(),
        format!("{{\"avatar\":\"data:image/png;base64,{image}\"}}"),
        "the task-list ASK SKU key-value skip hf_model sk-".to_owned(),
        "see https://example.com/path?q=1 and ftp://host/file".to_owned(),
        "Bearer token required".to_owned(),
        "Basic plan".to_owned(),
        "call 1234567890 at 10:30".to_owned(),
    ] {
        let (out, c) = s.sanitize_all(text.as_bytes());
        assert_eq!(String::from_utf8(out).expect("utf-8"), text);
        assert_eq!(c.total_redactions(), 0, "{}", &text[..text.len().min(60)]);
    }
}

#[test]
fn vault_echoes_and_their_encodings_are_redacted() {
    let s = sanitizer();
    let secret = "vault-echo-secret-value-42";
    let b64s = base64::engine::general_purpose::STANDARD.encode(secret);
    for text in [format!("x {secret} y"), format!("x {b64s} y"), format!("x {} y", b64(secret.as_bytes()))] {
        let (out, c) = s.sanitize_all(text.as_bytes());
        assert_eq!(String::from_utf8(out).expect("utf-8"), "x [REDACTED:vault_credential] y", "{text}");
        assert_eq!(c.vault_echoes, 1);
    }
    let pct = literal_variants("a b/c=d+e&f?g");
    assert!(pct.contains(&b"a%20b%2Fc%3Dd%2Be%26f%3Fg".to_vec()));
}

#[test]
fn json_stays_valid_json() {
    let s = sanitizer();
    let body = serde_json::json!({
        "token": github_like("ghp_", 3, true),
        "nested": {"pem": positive("private_key", 1), "url": "https://u:p4ssw0rd@h.example/x"},
        "jwt": jwt(2),
        "hidden": "a\u{200b}b\u{202e}c\u{E0041}",
        "list": [positive("slack_token", 1), positive("aws_access_key_id", 2)],
    })
    .to_string();
    let (out, c) = s.sanitize_all(body.as_bytes());
    let v: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
    assert_eq!(v["token"], "[REDACTED:github_pat]");
    assert_eq!(v["nested"]["pem"], "[REDACTED:private_key]");
    assert_eq!(v["nested"]["url"], "https://[REDACTED:url_credentials]@h.example/x");
    assert_eq!(v["hidden"], "abc");
    assert_eq!(c.total_redactions(), 6);
    assert_eq!(c.invisible_removed, 3);
}

#[test]
fn pem_blocks_stream_without_buffering_the_body() {
    let s = sanitizer();
    let mut st = s.stream();
    let mut out = Vec::new();
    st.push(b"key: -----BEGIN OPENSSH PRIVATE KEY-----\n", &mut out);
    for i in 0..1000 {
        st.push(fill(Charset::Base64, 70, i).as_bytes(), &mut out);
        st.push(b"\n", &mut out);
        assert!(st.held() <= 64, "held {}", st.held());
    }
    st.push(b"-----END OPENSSH PRIVATE KEY-----\ndone", &mut out);
    st.finish(&mut out);
    assert_eq!(String::from_utf8(out).expect("utf-8"), "key: [REDACTED:private_key]\ndone");
}

#[test]
fn clean_text_is_released_at_once() {
    let s = sanitizer();
    let mut st = s.stream();
    let mut out = Vec::new();
    st.push(b"data: {\"delta\":\"hello world\"}\n\n", &mut out);
    assert_eq!(out, b"data: {\"delta\":\"hello world\"}\n\n", "an SSE event is not held");
    st.push(b"data: {\"delta\":\"the key is gh", &mut out);
    assert!(st.held() <= 3, "only a possible prefix is held");
    st.push(format!("{}\"}}\n\n", &github_like("ghp_", 1, true)[2..]).as_bytes(), &mut out);
    st.finish(&mut out);
    assert!(String::from_utf8_lossy(&out).ends_with("the key is [REDACTED:github_pat]\"}\n\n"));
}

#[test]
fn leaves_unchanged_spots_what_would_change() {
    let s = sanitizer();
    assert!(s.leaves_unchanged(b"application/json; charset=utf-8"));
    assert!(s.leaves_unchanged(b"max-age=0, private, must-revalidate"));
    assert!(s.leaves_unchanged(b""));
    assert!(!s.leaves_unchanged(format!("token={}", github_like("ghp_", 3, true)).as_bytes()));
    assert!(!s.leaves_unchanged(b"id=vault-echo-secret-value-42"));
    assert!(!s.leaves_unchanged("a\u{200B}b".as_bytes()));
    assert!(!s.leaves_unchanged("caf\u{E9}".as_bytes()), "non-ASCII is left to the full pass");
    assert!(!s.leaves_unchanged(b"a\xFFb"));
}

fn corpus_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z {}\":,]{0,12}".prop_map(String::from),
        (0..64u64).prop_map(|s| positive(builtin()[(s as usize) % builtin().len()].id, s)),
        Just("\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}".to_owned()),
        Just("\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}".to_owned()),
        Just("a\u{200B}\u{202E}\u{E0041}\u{FE0F}b".to_owned()),
        Just("1\u{FE0F}\u{20E3}".to_owned()),
        Just("vault-echo-secret-value-42".to_owned()),
        Just("\u{FFFD}\u{4E2D}".to_owned()),
        (0..40u64).prop_map(|s| format!("{}:AA{}", 100000000 + s, fill(Charset::Base64Url, 33, s))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// The output does not depend on how the body is split into chunks,
    /// including splits inside UTF-8 sequences, prefixes and PEM blocks.
    #[test]
    fn output_is_identical_for_any_split(pieces in proptest::collection::vec(corpus_piece(), 1..12), cuts in proptest::collection::vec(0usize..4096, 0..12), invalid in any::<bool>(), tail in 0usize..4) {
        let s = sanitizer();
        let mut body = pieces.concat().into_bytes();
        if invalid && !body.is_empty() {
            let at = body.len() / 2;
            body.insert(at, 0xFF);
        }
        // Endings the Unicode filter holds until the end of the stream: a
        // cut-off UTF-8 sequence, a joiner, or none.
        match tail {
            1 => body.extend_from_slice(&"\u{4E2D}".as_bytes()[..2]),
            2 => body.extend_from_slice("\u{1F468}\u{200D}".as_bytes()),
            _ => {}
        }
        let (whole, wc) = s.sanitize_all(&body);
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
        points.sort();
        // Fed in those chunks, ended by `finish` or with the last chunk
        // given together with the end (`push_last`).
        let feed = |together: bool| {
            let mut st = s.stream();
            let mut out = Vec::new();
            let mut last = 0;
            for &p in &points {
                st.push(&body[last..p], &mut out);
                last = p;
            }
            if together {
                st.push_last(&body[last..], &mut out);
            } else {
                st.push(&body[last..], &mut out);
                st.finish(&mut out);
            }
            (out, st.counts())
        };
        let (out, c1) = feed(false);
        prop_assert_eq!(&out, &whole);
        prop_assert!(std::str::from_utf8(&out).is_ok());
        prop_assert_eq!(c1.total_redactions(), wc.total_redactions());
        let (out2, c2) = feed(true);
        prop_assert_eq!(&out2, &whole);
        prop_assert_eq!(
            (c1.by_kind, c1.vault_echoes, c1.verified, c1.invisible_removed, c1.invalid_utf8_replaced),
            (c2.by_kind, c2.vault_echoes, c2.verified, c2.invisible_removed, c2.invalid_utf8_replaced)
        );
    }

    /// Whatever `leaves_unchanged` accepts, sanitizing leaves byte for byte,
    /// with nothing counted. The pieces include ASCII near-misses and
    /// partial prefixes, which must not be mistaken for secrets either way.
    #[test]
    fn leaves_unchanged_is_sound(pieces in proptest::collection::vec(prop_oneof![corpus_piece(), "[ -~]{0,24}".prop_map(String::from), (0..64u64).prop_map(|s| negatives(builtin()[(s as usize) % builtin().len()].id, s).concat())], 1..8), cut in 0usize..64) {
        let s = sanitizer();
        let mut body = pieces.concat().into_bytes();
        // Also a value that ends inside a secret's prefix.
        if cut < body.len() {
            body.truncate(body.len() - cut);
        }
        let (out, counts) = s.sanitize_all(&body);
        if s.leaves_unchanged(&body) {
            prop_assert_eq!(&out, &body);
            prop_assert_eq!(counts.total_redactions() + counts.invisible_removed + counts.invalid_utf8_replaced, 0);
        }
    }

    /// Byte-at-a-time feeding gives the same output too.
    #[test]
    fn byte_at_a_time(pieces in proptest::collection::vec(corpus_piece(), 1..6)) {
        let s = sanitizer();
        let body = pieces.concat().into_bytes();
        let (whole, _) = s.sanitize_all(&body);
        let mut st = s.stream();
        let mut out = Vec::new();
        for b in &body {
            st.push(std::slice::from_ref(b), &mut out);
        }
        st.finish(&mut out);
        prop_assert_eq!(out, whole);
    }
}
