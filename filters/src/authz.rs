//! Cedar authorization.
//!
//! The model (see `policies/schema.cedarschema`):
//! - principal `Agent::"<did>"`, a member of `Tenant::"<id>"`;
//! - action `Action::"http/<METHOD>"`;
//! - resource `Endpoint::"<upstream url>"`, in `Route::"<name>"`;
//! - a context built by capgate only: method, path, query, route, tenant,
//!   tier, cosigned, chain length, token TTL, time.
//!
//! Policies are parsed and validated against the schema once, at load time,
//! and decisions are memoised per policy set (see [`crate::decision_cache`]).
//! Each policy is named by its `@id` annotation, and those ids are what a
//! decision reports. Default deny, forbid wins, and any evaluation error
//! denies: a policy that could not be evaluated must not let a request by.

use crate::decision_cache::DecisionCache;
use crate::policy_slice::{PolicySlicer, SliceStats};
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

/// Decisions memoised per policy set.
pub const DECISION_CACHE_ENTRIES: u64 = 65_536;

/// Why a policy set was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    #[error("schema: {0}")]
    Schema(String),
    #[error("{file}: parse error: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: policy id {id:?} is used twice")]
    DuplicateId { file: String, id: String },
    #[error("policies do not validate against the schema: {0}")]
    Validation(String),
}

/// Route facts that policies may read.
#[derive(Debug, Clone)]
pub struct RouteFacts {
    pub name: String,
    pub allow_writes: bool,
    pub sensitive: bool,
}

/// The risk tier of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Read,
    Write,
    Danger,
}

impl Tier {
    pub fn of_method(method: &str) -> Tier {
        match method {
            "GET" | "HEAD" | "OPTIONS" => Tier::Read,
            "POST" | "PUT" | "PATCH" => Tier::Write,
            _ => Tier::Danger,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Read => "read",
            Tier::Write => "write",
            Tier::Danger => "danger",
        }
    }
}

/// Everything a decision is made from. Built by the gateway from verified data.
#[derive(Debug, Clone)]
pub struct AuthzRequest<'a> {
    pub tenant: &'a str,
    pub agent: &'a str,
    pub method: &'a str,
    pub route: &'a RouteFacts,
    /// Normalised upstream URL without query.
    pub url: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub cosigned: bool,
    pub chain_length: usize,
    pub token_ttl: u64,
    pub now: u64,
}

/// The outcome of an authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzDecision {
    pub allowed: bool,
    /// The ids of the policies that decided (the forbids when denied by a
    /// forbid, the permits when allowed; empty for default deny). Shared:
    /// a cached decision hands them to every request without copying.
    pub policy_ids: Arc<[String]>,
    /// True when a policy failed to evaluate (the request is then denied).
    pub evaluation_error: bool,
}

/// A validated policy set with its schema, ready to evaluate.
pub struct PolicyEngine {
    schema: Schema,
    /// Owns the policy set (see [`PolicySlicer::full`]).
    pub(crate) slicer: PolicySlicer,
    authorizer: Authorizer,
    reasons: HashMap<String, String>,
    types: Types,
    decisions: DecisionCache,
}

struct Types {
    agent: EntityTypeName,
    tenant: EntityTypeName,
    route: EntityTypeName,
    endpoint: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    fn new() -> Self {
        let t = |n: &str| EntityTypeName::from_str(n).unwrap_or_else(|_| unreachable!("static type name {n}"));
        Types { agent: t("Agent"), tenant: t("Tenant"), route: t("Route"), endpoint: t("Endpoint"), action: t("Action") }
    }
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// Parse a schema in Cedar syntax.
pub fn parse_schema(src: &str) -> Result<Schema, PolicyLoadError> {
    Schema::from_cedarschema_str(src).map(|(s, _warnings)| s).map_err(|e| PolicyLoadError::Schema(format!("{e}")))
}

/// Parse policy text from `file`, naming each policy by its `@id`
/// annotation (or `<file>#<n>` when it has none), into `into`.
pub fn parse_policies_into(into: &mut PolicySet, file: &str, src: &str) -> Result<(), PolicyLoadError> {
    let parsed = PolicySet::from_str(src).map_err(|e| PolicyLoadError::Parse { file: file.to_owned(), message: render_diagnostic(&e) })?;
    for (n, p) in parsed.policies().enumerate() {
        let id = p.annotation("id").map(str::to_owned).unwrap_or_else(|| format!("{file}#{n}"));
        let renamed: Policy = p.new_id(PolicyId::new(&id));
        into.add(renamed).map_err(|_| PolicyLoadError::DuplicateId { file: file.to_owned(), id })?;
    }
    Ok(())
}

fn render_diagnostic(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl PolicyEngine {
    /// Validate `policies` against `schema` (strict mode) and build an engine.
    pub fn new(schema: Schema, policies: PolicySet) -> Result<Self, PolicyLoadError> {
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !result.validation_passed() {
            let msgs: Vec<String> = result.validation_errors().map(|e| render_diagnostic(e)).collect();
            return Err(PolicyLoadError::Validation(msgs.join("; ")));
        }
        let reasons = policies.policies().filter_map(|p| p.annotation("reason").map(|r| (p.id().to_string(), r.to_owned()))).collect();
        let decisions = DecisionCache::new(&policies, DECISION_CACHE_ENTRIES);
        let slicer = PolicySlicer::new(policies, &schema);
        Ok(PolicyEngine { schema, slicer, authorizer: Authorizer::new(), reasons, types: Types::new(), decisions })
    }

    /// Parse schema and policy sources and build an engine.
    pub fn from_sources(schema_src: &str, files: &[(&str, &str)]) -> Result<Self, PolicyLoadError> {
        let schema = parse_schema(schema_src)?;
        let mut set = PolicySet::new();
        for (name, src) in files {
            parse_policies_into(&mut set, name, src)?;
        }
        Self::new(schema, set)
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.slicer.full().policies().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How the policies were filed for slicing (see [`crate::policy_slice`]).
    pub fn slice_stats(&self) -> SliceStats {
        self.slicer.stats()
    }

    /// The `@reason` annotation of a policy, if any.
    pub fn reason_of(&self, id: &str) -> Option<&str> {
        self.reasons.get(id).map(String::as_str)
    }

    /// Build the Cedar request and entities for `r`.
    pub fn cedar_inputs(&self, r: &AuthzRequest<'_>) -> Result<(Request, Entities), String> {
        let t = &self.types;
        let tenant = uid(&t.tenant, r.tenant);
        let agent = uid(&t.agent, r.agent);
        let route = uid(&t.route, &r.route.name);
        let endpoint = uid(&t.endpoint, r.url);
        let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
        let route_entity = Entity::new(
            route.clone(),
            HashMap::from([
                ("name".to_owned(), s(&r.route.name)),
                ("allow_writes".to_owned(), RestrictedExpression::new_bool(r.route.allow_writes)),
                ("sensitive".to_owned(), RestrictedExpression::new_bool(r.route.sensitive)),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let endpoint_entity = Entity::new(
            endpoint.clone(),
            HashMap::from([
                ("route".to_owned(), RestrictedExpression::new_entity_uid(route.clone())),
                ("url".to_owned(), s(r.url)),
                ("host".to_owned(), s(r.host)),
                ("path".to_owned(), s(r.path)),
            ]),
            HashSet::from([route]),
        )
        .map_err(|e| e.to_string())?;
        let agent_entity = Entity::new_no_attrs(agent.clone(), HashSet::from([tenant.clone()]));
        let tenant_entity = Entity::new_no_attrs(tenant, HashSet::new());
        let entities =
            Entities::from_entities([tenant_entity, agent_entity, route_entity, endpoint_entity], None).map_err(|e| e.to_string())?;
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let context = Context::from_pairs([
            ("method".to_owned(), s(r.method)),
            ("path".to_owned(), s(r.path)),
            ("query".to_owned(), s(r.query)),
            ("route".to_owned(), s(&r.route.name)),
            ("tenant".to_owned(), s(r.tenant)),
            ("tier".to_owned(), s(Tier::of_method(r.method).as_str())),
            ("cosigned".to_owned(), RestrictedExpression::new_bool(r.cosigned)),
            ("chain_length".to_owned(), RestrictedExpression::new_long(clamp(r.chain_length as u64))),
            ("token_ttl".to_owned(), RestrictedExpression::new_long(clamp(r.token_ttl))),
            ("now".to_owned(), RestrictedExpression::new_long(clamp(r.now))),
        ])
        .map_err(|e| e.to_string())?;
        let mut action_id = String::with_capacity(5 + r.method.len());
        action_id.push_str("http/");
        action_id.push_str(r.method);
        let action = uid(&t.action, &action_id);
        let request = Request::new(agent, action, endpoint, context, None).map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    /// Decide, from the decision cache when this set already decided the
    /// same inputs. Never panics; anything that cannot be decided is a deny.
    pub fn authorize(&self, r: &AuthzRequest<'_>) -> Arc<AuthzDecision> {
        self.decisions.get_or_evaluate(r, || self.evaluate(r))
    }

    /// What the policies read of the volatile context (`now`, `token_ttl`).
    pub fn context_use(&self) -> crate::decision_cache::ContextUse {
        self.decisions.context_use()
    }

    /// Decide by evaluating the policies that can apply to `r` (no cache).
    /// Never panics; anything that cannot be decided is a deny.
    pub fn evaluate(&self, r: &AuthzRequest<'_>) -> AuthzDecision {
        self.evaluate_with(r, &self.slicer.select(r))
    }

    /// Decide by evaluating every policy of the set, without slicing: the
    /// reference that slicing must agree with (tests and benches).
    pub fn evaluate_unsliced(&self, r: &AuthzRequest<'_>) -> AuthzDecision {
        self.evaluate_with(r, self.slicer.full())
    }

    fn evaluate_with(&self, r: &AuthzRequest<'_>, policies: &PolicySet) -> AuthzDecision {
        let (request, entities) = match self.cedar_inputs(r) {
            Ok(x) => x,
            Err(_) => return AuthzDecision { allowed: false, policy_ids: Arc::new([]), evaluation_error: true },
        };
        let response = self.authorizer.is_authorized(&request, policies, &entities);
        let evaluation_error = response.diagnostics().errors().next().is_some();
        let policy_ids: Arc<[String]> = response.diagnostics().reason().map(|id| id.to_string()).collect();
        let allowed = response.decision() == Decision::Allow && !evaluation_error;
        AuthzDecision { allowed, policy_ids, evaluation_error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = include_str!("../../policies/schema.cedarschema");
    const AUTHZ: &str = include_str!("../../policies/authz.cedar");

    fn route(allow_writes: bool) -> RouteFacts {
        RouteFacts { name: "github".into(), allow_writes, sensitive: false }
    }

    fn req<'a>(method: &'a str, route: &'a RouteFacts) -> AuthzRequest<'a> {
        AuthzRequest {
            tenant: "acme",
            agent: "did:key:z6MkAgent",
            method,
            route,
            url: "https://api.github.com/repos/acme/app",
            host: "api.github.com",
            path: "/repos/acme/app",
            query: "",
            cosigned: false,
            chain_length: 2,
            token_ttl: 30,
            now: 1_700_000_000,
        }
    }

    fn engine(extra: &str) -> PolicyEngine {
        PolicyEngine::from_sources(SCHEMA, &[("authz.cedar", AUTHZ), ("extra.cedar", extra)]).expect("valid policies")
    }

    #[test]
    fn shipped_defaults() {
        let e = engine("");
        let ro = route(false);
        let rw = route(true);
        let d = e.authorize(&req("GET", &ro));
        assert!(d.allowed);
        assert_eq!(&*d.policy_ids, ["reads-allowed"]);
        assert!(!e.authorize(&req("POST", &ro)).allowed, "writes need opt-in");
        let d = e.authorize(&req("POST", &rw));
        assert!(d.allowed);
        assert_eq!(&*d.policy_ids, ["writes-on-opted-in-routes"]);
        let d = e.authorize(&req("DELETE", &rw));
        assert!(!d.allowed);
        assert_eq!(&*d.policy_ids, ["delete-forbidden"]);
        let mut cosigned = req("DELETE", &rw);
        cosigned.cosigned = true;
        let d = e.authorize(&cosigned);
        assert!(d.allowed, "a cosigned DELETE on an opted-in route");
        assert_eq!(&*d.policy_ids, ["cosigned-deletes-on-opted-in-routes"]);
        let mut cosigned_ro = req("DELETE", &ro);
        cosigned_ro.cosigned = true;
        assert!(!e.authorize(&cosigned_ro).allowed);
        let d = e.authorize(&req("TRACE", &rw));
        assert!(!d.allowed && d.policy_ids.is_empty(), "unknown actions fall to default deny");
        assert_eq!(e.reason_of("delete-forbidden"), Some("DELETE is forbidden without a cosigner"));
    }

    #[test]
    fn shipped_risk_policies() {
        let risk = PolicyEngine::from_sources(SCHEMA, &[("risk.cedar", include_str!("../../policies/risk.cedar"))]).expect("valid");
        let plain = route(true);
        let sensitive = RouteFacts { sensitive: true, ..route(true) };
        assert!(!risk.authorize(&req("GET", &sensitive)).allowed, "reads are not risky");
        assert!(!risk.authorize(&req("POST", &plain)).allowed);
        let d = risk.authorize(&req("POST", &sensitive));
        assert!(d.allowed);
        assert_eq!(&*d.policy_ids, ["risk-sensitive-write"]);
        let mut d = risk.authorize(&req("DELETE", &plain)).policy_ids.to_vec();
        d.sort();
        assert_eq!(d, vec!["risk-danger-tier", "risk-delete"]);
        assert_eq!(risk.reason_of("risk-delete"), Some("DELETE removes data"));
    }

    #[test]
    fn cached_decisions_follow_every_input_they_depend_on() {
        // A set that reads the clock: the key must include `now`.
        let e = engine(r#"@id("after-hours") forbid (principal, action, resource) when { context.now >= 1700000100 };"#);
        assert!(e.context_use().now && !e.context_use().token_ttl);
        let r = route(false);
        let mut q = req("GET", &r);
        assert!(e.authorize(&q).allowed);
        assert!(e.authorize(&q).allowed, "a hit gives the same decision");
        q.now = 1_700_000_100;
        let d = e.authorize(&q);
        assert!(!d.allowed, "a later clock is not served the earlier decision");
        assert_eq!(&*d.policy_ids, ["after-hours"]);
        // Every other input is in the key: a different path, agent, query or
        // cosigned flag is decided afresh and agrees with evaluation.
        let e = engine(
            r#"@id("no-app") forbid (principal, action, resource) when { context.path like "/repos/acme/app*" && !context.cosigned && context.query != "ok" && principal != Agent::"did:key:z6MkBoss" };"#,
        );
        assert!(!e.context_use().now);
        let base = req("GET", &r);
        assert!(!e.authorize(&base).allowed);
        for variant in [
            AuthzRequest { path: "/repos/acme/other", url: "https://api.github.com/repos/acme/other", ..base.clone() },
            AuthzRequest { agent: "did:key:z6MkBoss", ..base.clone() },
            AuthzRequest { query: "ok", ..base.clone() },
            AuthzRequest { cosigned: true, ..base.clone() },
        ] {
            let d = e.authorize(&variant);
            assert!(d.allowed, "{variant:?}");
            assert_eq!(*d, e.evaluate(&variant));
            assert!(!e.authorize(&base).allowed, "the base request is still denied");
        }
        // A set that does not read the clock is served from the cache across seconds.
        let mut later = base.clone();
        later.now += 3600;
        later.token_ttl = 1;
        assert_eq!(e.decisions.key(&later), e.decisions.key(&base));
    }

    #[test]
    fn the_decision_cache_reuses_its_key_buffer_without_mixing_requests() {
        // Lookups write their key into the thread's scratch buffer: a long key
        // (over the size the buffer is kept at) then a short one, alternately,
        // must each be evaluated once and then found.
        let e = engine(r#"@id("no-long") forbid (principal, action, resource) when { context.path like "/repos/aaaa*" };"#);
        let r = route(false);
        let long_path = format!("/repos/{}", "a".repeat(crate::scratch::KEPT_BYTES));
        let long_url = format!("https://api.github.com{long_path}");
        let short = req("GET", &r);
        let long = AuthzRequest { path: &long_path, url: &long_url, ..short.clone() };
        let calls = std::cell::Cell::new(0);
        for q in [&long, &short, &long, &short, &short] {
            let d = e.decisions.get_or_evaluate(q, || {
                calls.set(calls.get() + 1);
                e.evaluate(q)
            });
            assert_eq!(*d, e.evaluate(q));
        }
        assert_eq!(calls.get(), 2, "each request is evaluated once, then served from the cache");
        assert!(!e.authorize(&long).allowed && e.authorize(&short).allowed);
    }

    #[test]
    fn forbid_beats_permit() {
        let e = engine(r#"@id("no-app-reads") forbid (principal, action, resource) when { context.path like "/repos/acme/app*" };"#);
        let r = route(false);
        let d = e.authorize(&req("GET", &r));
        assert!(!d.allowed);
        assert_eq!(&*d.policy_ids, ["no-app-reads"]);
    }

    #[test]
    fn context_and_entities_conform_to_schema() {
        let e = engine("");
        let r = route(true);
        for m in ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"] {
            let (request, entities) = e.cedar_inputs(&req(m, &r)).expect("inputs build");
            let ctx_ok = Request::new(
                request.principal().expect("principal").clone(),
                request.action().expect("action").clone(),
                request.resource().expect("resource").clone(),
                request.context().expect("context").clone(),
                Some(e.schema()),
            );
            assert!(ctx_ok.is_ok(), "{m}: {:?}", ctx_ok.err());
            let ents: Vec<Entity> = entities.iter().cloned().collect();
            Entities::from_entities(ents, Some(e.schema())).expect("entities conform");
        }
    }

    #[test]
    fn invalid_policies_are_refused_with_the_reason() {
        let err = PolicyEngine::from_sources(SCHEMA, &[("bad.cedar", "permit(principal, action, resource) when { context.nope };")])
            .err()
            .expect("refused");
        assert!(matches!(err, PolicyLoadError::Validation(_)), "{err}");
        let err = PolicyEngine::from_sources(SCHEMA, &[("bad.cedar", "permit(principal")]).err().expect("refused");
        assert!(matches!(err, PolicyLoadError::Parse { .. }), "{err}");
        let dup = r#"@id("a") permit(principal, action, resource); @id("a") permit(principal, action, resource);"#;
        let err = PolicyEngine::from_sources(SCHEMA, &[("dup.cedar", dup)]).err().expect("refused");
        assert!(matches!(err, PolicyLoadError::DuplicateId { .. }), "{err}");
    }
}
