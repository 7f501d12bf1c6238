//! Policy slicing: before Cedar runs, pick the policies that can apply to a
//! request, so that only those are evaluated.
//!
//! Cedar's authorizer evaluates every policy of the set it is given, so its
//! cost grows with the set (about 0.6 µs a policy). Most policies of a real
//! set are pinned to a tenant, an agent, a route, a method or a path, and
//! cannot apply to most requests. At load time each policy is given a
//! *guard*: tests on the request facts that hold whenever the policy is
//! satisfied **or fails to evaluate**. A request whose facts fail a guard
//! skips that policy; this changes no decision, no reason and no error flag,
//! because a skipped policy would have evaluated to plain `false`.
//!
//! Where a guard comes from:
//! - the scope. Cedar checks it before the conditions and it cannot error.
//!   capgate builds the entity graph itself (an `Agent` is in its `Tenant`
//!   only; an `Endpoint` is in its `Route` only), so `principal in
//!   Tenant::"t"` is "the tenant is t", `resource in Route::"r"` is "the route
//!   is r", `action == Action::"http/GET"` is "the method is GET", and a
//!   scope on any other type can never hold. `action in [...]` is read the
//!   same way only when the schema declares no action groups.
//! - the leading conjuncts of the conditions, as long as each one is an
//!   atom that cannot error: `context.<attr> == "literal"` (or `!=`),
//!   `context.<attr> like "pattern"`, `context.cosigned`, and their negation.
//!   The schema declares these attributes as required, and strict validation
//!   has already checked their types, so these atoms evaluate to a boolean.
//!   The walk stops at the first conjunct that is not such an atom: past it,
//!   an earlier conjunct could error, and an error must still deny.
//!
//! A policy that is not recognised at all (a template link, an unreadable
//! JSON form) gets no guard and is always evaluated. Selection is
//! indexed: each guard's most selective equality is a key into a per-fact
//! map, so a request looks at the policies filed under its own route,
//! tenant, agent... plus the unkeyed ones, not at the whole set. The policy
//! sets built for a selection are kept (bounded) and shared.

use crate::authz::{AuthzRequest, Tier};
use cedar_policy::{Policy, PolicySet, Schema};
use moka::sync::Cache;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The policy sets built for distinct selections are kept up to this many
/// policies in all (each entry weighs its length: every policy of a subset
/// is a clone, with its source text), so the cache's memory does not grow
/// with the size of the set times the number of selections.
const SUBSET_CACHE_POLICIES: u64 = 32_768;

/// A string fact of a request, as the entities and context carry it.
/// The order is the key preference: earlier facts are more selective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fact {
    Url,
    Agent,
    Path,
    Query,
    Route,
    Tenant,
    Method,
    Tier,
}

const FACTS: [Fact; 8] = [Fact::Url, Fact::Agent, Fact::Path, Fact::Query, Fact::Route, Fact::Tenant, Fact::Method, Fact::Tier];

impl Fact {
    fn of<'a>(self, r: &'a AuthzRequest<'_>) -> &'a str {
        match self {
            Fact::Url => r.url,
            Fact::Agent => r.agent,
            Fact::Path => r.path,
            Fact::Query => r.query,
            Fact::Route => &r.route.name,
            Fact::Tenant => r.tenant,
            Fact::Method => r.method,
            Fact::Tier => Tier::of_method(r.method).as_str(),
        }
    }

    /// The string context attribute that carries this fact.
    fn of_context_attr(attr: &str) -> Option<Fact> {
        Some(match attr {
            "method" => Fact::Method,
            "path" => Fact::Path,
            "query" => Fact::Query,
            "route" => Fact::Route,
            "tenant" => Fact::Tenant,
            "tier" => Fact::Tier,
            _ => return None,
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A Cedar `like` pattern: the literal runs between its wildcards (one
/// more run than wildcards; runs may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob {
    runs: Box<[Box<str>]>,
}

/// A test on a string fact.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StrTest {
    Eq(Box<str>),
    OneOf(Box<[Box<str>]>),
    Like(Glob),
}

impl StrTest {
    fn holds(&self, v: &str) -> bool {
        match self {
            StrTest::Eq(x) => **x == *v,
            StrTest::OneOf(xs) => xs.iter().any(|x| **x == *v),
            StrTest::Like(g) => g.matches(v),
        }
    }
}

/// A test that must hold for a policy to be satisfied or to error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    /// `expected == (test holds on the fact)`.
    Str {
        fact: Fact,
        test: StrTest,
        expected: bool,
    },
    Cosigned(bool),
    /// A scope that no request built by capgate can satisfy.
    Never,
}

impl Atom {
    fn holds(&self, r: &AuthzRequest<'_>) -> bool {
        match self {
            Atom::Str { fact, test, expected } => test.holds(fact.of(r)) == *expected,
            Atom::Cosigned(v) => r.cosigned == *v,
            Atom::Never => false,
        }
    }

    fn negated(self) -> Option<Atom> {
        match self {
            Atom::Str { fact, test, expected } => Some(Atom::Str { fact, test, expected: !expected }),
            Atom::Cosigned(v) => Some(Atom::Cosigned(!v)),
            Atom::Never => None,
        }
    }

    /// The index key this atom offers: (fact, values), for positive equalities.
    fn key(&self) -> Option<(Fact, Vec<&str>)> {
        match self {
            Atom::Str { fact, test: StrTest::Eq(v), expected: true } => Some((*fact, vec![&**v])),
            Atom::Str { fact, test: StrTest::OneOf(vs), expected: true } => Some((*fact, vs.iter().map(|v| &**v).collect())),
            _ => None,
        }
    }
}

impl Glob {
    /// Cedar `like`: `*` matches any run of characters, everything else
    /// itself. Byte-wise matching is exact for UTF-8 (a literal can only
    /// match at a character boundary), and leftmost matching of the middle
    /// runs is exact for a pattern whose only wildcard is `*`.
    fn matches(&self, s: &str) -> bool {
        let Some((first, rest)) = self.runs.split_first() else { return s.is_empty() };
        let Some(after_first) = s.strip_prefix(&**first) else { return false };
        let Some((last, middle)) = rest.split_last() else { return after_first.is_empty() };
        let Some(mut inner) = after_first.strip_suffix(&**last) else { return false };
        for run in middle {
            match inner.find(&**run) {
                Some(at) => inner = &inner[at + run.len()..],
                None => return false,
            }
        }
        true
    }

    /// From Cedar's JSON form: `"Wildcard"` or `{"Literal": "<char>"}` each.
    fn from_json(v: &Value) -> Option<Glob> {
        let mut runs = vec![String::new()];
        for el in v.as_array()? {
            if el.as_str() == Some("Wildcard") {
                runs.push(String::new());
            } else {
                runs.last_mut()?.push_str(el.get("Literal")?.as_str()?);
            }
        }
        Some(Glob { runs: runs.into_iter().map(String::into_boxed_str).collect() })
    }
}

/// `context.<attr>` → the attribute name.
fn context_attr(v: &Value) -> Option<&str> {
    let dot = v.get(".")?;
    (dot.get("left")?.get("Var")?.as_str()? == "context").then_some(())?;
    dot.get("attr")?.as_str()
}

/// A condition expression that is an error-free atom, or None.
fn atom_of(expr: &Value) -> Option<Atom> {
    let obj = expr.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    let (op, body) = obj.iter().next()?;
    match op.as_str() {
        "." => (context_attr(expr)? == "cosigned").then_some(Atom::Cosigned(true)),
        "!" => atom_of(body.get("arg")?)?.negated(),
        "==" | "!=" => {
            let (l, r) = (body.get("left")?, body.get("right")?);
            let (attr, lit) = match (context_attr(l), context_attr(r)) {
                (Some(a), None) => (a, r.get("Value")?),
                (None, Some(a)) => (a, l.get("Value")?),
                _ => return None,
            };
            let positive = op == "==";
            if attr == "cosigned" {
                return Some(Atom::Cosigned(lit.as_bool()? == positive));
            }
            let fact = Fact::of_context_attr(attr)?;
            Some(Atom::Str { fact, test: StrTest::Eq(lit.as_str()?.into()), expected: positive })
        }
        "like" => {
            let fact = Fact::of_context_attr(context_attr(body.get("left")?)?)?;
            Some(Atom::Str { fact, test: StrTest::Like(Glob::from_json(body.get("pattern")?)?), expected: true })
        }
        _ => None,
    }
}

/// The `&&` chain of `expr`, in evaluation order.
fn conjuncts<'a>(expr: &'a Value, out: &mut Vec<&'a Value>) {
    match expr.get("&&") {
        Some(and) => match (and.get("left"), and.get("right")) {
            (Some(l), Some(r)) => {
                conjuncts(l, out);
                conjuncts(r, out);
            }
            _ => out.push(expr),
        },
        None => out.push(expr),
    }
}

/// The atoms of a condition list: leading error-free atoms only.
fn condition_atoms(conditions: &[Value], out: &mut Vec<Atom>) {
    for c in conditions {
        let (Some(kind), Some(body)) = (c.get("kind").and_then(Value::as_str), c.get("body")) else { return };
        if kind == "unless" {
            // `unless { atom }` is `when { !atom }`; anything else stops the walk.
            match atom_of(body).and_then(Atom::negated) {
                Some(a) => {
                    out.push(a);
                    continue;
                }
                None => return,
            }
        }
        if kind != "when" {
            return;
        }
        let mut chain = Vec::new();
        conjuncts(body, &mut chain);
        for conjunct in chain {
            match atom_of(conjunct) {
                Some(a) => out.push(a),
                None => return,
            }
        }
    }
}

fn entity_of(v: &Value) -> Option<(&str, &str)> {
    Some((v.get("type")?.as_str()?, v.get("id")?.as_str()?))
}

/// The atom of a principal or resource `==`/`in` entity, given the one
/// entity type the request uses for that slot and what it is in.
fn entity_atom(ty: &str, id: &str, op: &str, own: (&str, Fact), parent: (&str, Fact)) -> Atom {
    let eq = |fact: Fact| Atom::Str { fact, test: StrTest::Eq(id.into()), expected: true };
    if ty == own.0 {
        return eq(own.1);
    }
    if op == "in" && ty == parent.0 {
        return eq(parent.1);
    }
    Atom::Never
}

/// Principal or resource scope atoms.
fn slot_atoms(scope: &Value, own: (&str, Fact), parent: (&str, Fact), out: &mut Vec<Atom>) -> Option<()> {
    let op = scope.get("op")?.as_str()?;
    match op {
        "All" => {}
        "==" | "in" => {
            let (ty, id) = entity_of(scope.get("entity")?)?;
            out.push(entity_atom(ty, id, op, own, parent));
        }
        "is" => {
            if scope.get("entity_type")?.as_str()? != own.0 {
                out.push(Atom::Never);
                return Some(());
            }
            if let Some(inner) = scope.get("in") {
                let (ty, id) = entity_of(inner.get("entity")?)?;
                out.push(entity_atom(ty, id, "in", own, parent));
            }
        }
        _ => return None,
    }
    Some(())
}

/// Action scope atoms. `http/<METHOD>` is the only action shape requested.
fn action_atoms(scope: &Value, action_groups: bool, out: &mut Vec<Atom>) -> Option<()> {
    let method_of = |e: &Value| -> Option<Option<Box<str>>> {
        let (ty, id) = entity_of(e)?;
        Some(if ty == "Action" { id.strip_prefix("http/").map(Into::into) } else { None })
    };
    match scope.get("op")?.as_str()? {
        "All" => {}
        "==" => out.push(match method_of(scope.get("entity")?)? {
            Some(m) => Atom::Str { fact: Fact::Method, test: StrTest::Eq(m), expected: true },
            None => Atom::Never,
        }),
        "in" if !action_groups => {
            let listed: Vec<&Value> = match (scope.get("entity"), scope.get("entities")) {
                (Some(e), _) => vec![e],
                (None, Some(es)) => es.as_array()?.iter().collect(),
                _ => return None,
            };
            let mut methods = Vec::new();
            for e in listed {
                methods.extend(method_of(e)?);
            }
            out.push(if methods.is_empty() {
                Atom::Never
            } else {
                Atom::Str { fact: Fact::Method, test: StrTest::OneOf(methods.into_boxed_slice()), expected: true }
            });
        }
        _ => return None,
    }
    Some(())
}

/// The guard of one policy, or None when it must always be evaluated.
fn guard_of(policy: &Policy, action_groups: bool) -> Option<Vec<Atom>> {
    if !policy.is_static() {
        return None;
    }
    let json = policy.to_json().ok()?;
    let mut atoms = Vec::new();
    slot_atoms(json.get("principal")?, ("Agent", Fact::Agent), ("Tenant", Fact::Tenant), &mut atoms)?;
    action_atoms(json.get("action")?, action_groups, &mut atoms)?;
    slot_atoms(json.get("resource")?, ("Endpoint", Fact::Url), ("Route", Fact::Route), &mut atoms)?;
    if let Some(conditions) = json.get("conditions").and_then(Value::as_array) {
        condition_atoms(conditions, &mut atoms);
    }
    Some(atoms)
}

/// Picks, per request, the policies that can apply.
pub struct PolicySlicer {
    full: Arc<PolicySet>,
    policies: Vec<Policy>,
    guards: Vec<Vec<Atom>>,
    /// Policies without a key: checked on every request.
    unkeyed: Vec<u32>,
    /// Per fact (by `Fact::index`): value → policies keyed on it.
    keyed: [HashMap<Box<str>, Vec<u32>>; 8],
    /// Policies that no request can select.
    never: usize,
    subsets: Cache<Box<[u32]>, Arc<PolicySet>>,
}

/// What slicing made of a set, for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceStats {
    pub policies: usize,
    /// Policies filed under a request fact (looked at only when it matches).
    pub indexed: usize,
    /// Policies with a guard but no key (their guard is checked per request).
    pub guarded: usize,
    /// Policies evaluated on every request.
    pub unguarded: usize,
    /// Policies no request can satisfy (their scope names another type).
    pub never: usize,
}

impl PolicySlicer {
    /// File `set` for slicing. Only sound for a set that passed strict
    /// validation against `schema` (the atoms rely on the attributes'
    /// declared types), which is why only the engine builds one.
    pub(crate) fn new(set: PolicySet, schema: &Schema) -> PolicySlicer {
        let action_groups = schema.action_groups().next().is_some();
        let policies: Vec<Policy> = set.policies().cloned().collect();
        let mut guards = Vec::with_capacity(policies.len());
        let mut unkeyed = Vec::new();
        let mut keyed: [HashMap<Box<str>, Vec<u32>>; 8] = Default::default();
        let mut never = 0;
        for (i, p) in policies.iter().enumerate() {
            let i = i as u32;
            let guard = guard_of(p, action_groups).unwrap_or_default();
            if guard.contains(&Atom::Never) {
                never += 1;
                guards.push(guard);
                continue;
            }
            let key = FACTS.iter().find_map(|f| guard.iter().filter_map(Atom::key).find(|(fact, _)| fact == f));
            match key {
                Some((fact, values)) => {
                    for v in values {
                        keyed[fact.index()].entry(v.into()).or_default().push(i);
                    }
                }
                None => unkeyed.push(i),
            }
            guards.push(guard);
        }
        PolicySlicer {
            full: Arc::new(set),
            policies,
            guards,
            unkeyed,
            keyed,
            never,
            subsets: Cache::<Box<[u32]>, Arc<PolicySet>>::builder()
                .max_capacity(SUBSET_CACHE_POLICIES)
                .weigher(|k, _| u32::try_from(k.len()).unwrap_or(u32::MAX).max(1))
                .build(),
        }
    }

    pub fn stats(&self) -> SliceStats {
        let unguarded = self.unkeyed.iter().filter(|&&i| self.guards[i as usize].is_empty()).count();
        SliceStats {
            policies: self.policies.len(),
            indexed: self.policies.len() - self.unkeyed.len() - self.never,
            guarded: self.unkeyed.len() - unguarded,
            unguarded,
            never: self.never,
        }
    }

    /// The indices of the policies that can apply to `r`, ascending.
    pub fn selection(&self, r: &AuthzRequest<'_>) -> Vec<u32> {
        let mut picked: Vec<u32> = Vec::new();
        let guard_holds = |i: u32| self.guards[i as usize].iter().all(|a| a.holds(r));
        picked.extend(self.unkeyed.iter().copied().filter(|&i| guard_holds(i)));
        for fact in FACTS {
            let map = &self.keyed[fact.index()];
            if map.is_empty() {
                continue;
            }
            if let Some(bucket) = map.get(fact.of(r)) {
                picked.extend(bucket.iter().copied().filter(|&i| guard_holds(i)));
            }
        }
        picked.sort_unstable();
        picked.dedup();
        picked
    }

    /// The policy set to evaluate for `r`: the whole set when every policy
    /// can apply, otherwise the selected ones.
    pub fn select(&self, r: &AuthzRequest<'_>) -> Arc<PolicySet> {
        let picked = self.selection(r);
        if picked.len() == self.policies.len() {
            return self.full.clone();
        }
        let key = picked.into_boxed_slice();
        if let Some(set) = self.subsets.get(&key) {
            return set;
        }
        let mut subset = PolicySet::new();
        for &i in key.iter() {
            if subset.add(self.policies[i as usize].clone()).is_err() {
                // Cannot happen for static policies with distinct ids; fall
                // back to the whole set rather than decide on a partial one.
                return self.full.clone();
            }
        }
        let subset = Arc::new(subset);
        self.subsets.insert(key, subset.clone());
        subset
    }

    /// The whole set.
    pub fn full(&self) -> &Arc<PolicySet> {
        &self.full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{parse_schema, RouteFacts};
    use std::str::FromStr;

    const SCHEMA: &str = include_str!("../../policies/schema.cedarschema");

    fn pat(s: &str) -> Glob {
        Glob { runs: s.split('*').map(Into::into).collect() }
    }

    #[test]
    fn like_matches_as_cedar_does() {
        let cases = [
            ("/repos/a/b", "/repos/*", true),
            ("/repos/a/b", "*/b", true),
            ("/repos/a/b", "*a*", true),
            ("/repos/a/b", "/repos/*/c", false),
            ("/repos", "/repos*", true),
            ("/repo", "/repos*", false),
            ("ab", "a*b*", true),
            ("aXb", "a*b", true),
            ("a", "a*a", false),
            ("aa", "a*a", true),
            ("abcabd", "*abd", true),
            ("abcabd", "a*c*d", true),
            ("", "*", true),
            ("", "", true),
            ("x", "", false),
            ("héllo", "h*o", true),
            ("héllo", "*é*", true),
            ("/generated/7/x", "/generated/7/*", true),
            ("/generated/77/x", "/generated/7/*", false),
        ];
        for (s, p, want) in cases {
            assert_eq!(pat(p).matches(s), want, "{s:?} like {p:?}");
        }
    }

    fn slicer(src: &str) -> PolicySlicer {
        let schema = parse_schema(SCHEMA).expect("schema");
        PolicySlicer::new(PolicySet::from_str(src).expect("parses"), &schema)
    }

    fn guard(src: &str) -> Vec<Atom> {
        let s = slicer(src);
        assert_eq!(s.guards.len(), 1);
        s.guards[0].clone()
    }

    fn eq(fact: Fact, v: &str) -> Atom {
        Atom::Str { fact, test: StrTest::Eq(v.into()), expected: true }
    }

    #[test]
    fn guards_come_from_the_scope_and_the_leading_atoms() {
        assert_eq!(
            guard(r#"permit(principal in Tenant::"acme", action == Action::"http/GET", resource in Route::"gh");"#),
            vec![eq(Fact::Tenant, "acme"), eq(Fact::Method, "GET"), eq(Fact::Route, "gh")]
        );
        assert_eq!(
            guard(r#"permit(principal == Agent::"did:x", action, resource == Endpoint::"https://h/p");"#),
            vec![eq(Fact::Agent, "did:x"), eq(Fact::Url, "https://h/p")]
        );
        assert_eq!(
            guard(
                r#"forbid(principal is Agent in Tenant::"t", action in [Action::"http/PUT", Action::"http/POST"], resource is Endpoint in Route::"r");"#
            ),
            vec![
                eq(Fact::Tenant, "t"),
                Atom::Str { fact: Fact::Method, test: StrTest::OneOf(vec!["PUT".into(), "POST".into()].into()), expected: true },
                eq(Fact::Route, "r")
            ]
        );
        // Scopes on types a request never has.
        for never in [
            r#"permit(principal == Tenant::"t", action, resource);"#,
            r#"permit(principal in Route::"r", action, resource);"#,
            r#"permit(principal is Tenant, action, resource);"#,
            r#"permit(principal, action == Action::"other", resource);"#,
            r#"permit(principal, action, resource == Route::"r");"#,
            r#"permit(principal, action, resource is Route);"#,
        ] {
            assert!(guard(never).contains(&Atom::Never), "{never}");
        }
        // Conditions: leading atoms, through `&&`, `!`, `!=`, literal on either side.
        assert_eq!(
            guard(
                r#"forbid(principal, action, resource) when { "gh" == context.route && context.path like "/a/*" && !context.cosigned && context.tier != "read" && context.chain_length > 2 && context.tenant == "never-read" };"#
            ),
            vec![
                eq(Fact::Route, "gh"),
                Atom::Str { fact: Fact::Path, test: StrTest::Like(pat("/a/*")), expected: true },
                Atom::Cosigned(false),
                Atom::Str { fact: Fact::Tier, test: StrTest::Eq("read".into()), expected: false },
            ],
            "the walk stops at the first conjunct that is not an atom"
        );
        assert_eq!(
            guard(r#"forbid(principal, action, resource) unless { context.cosigned } when { context.route == "gh" };"#),
            vec![Atom::Cosigned(false), eq(Fact::Route, "gh")]
        );
        // An `unless` that is not a single atom stops the walk.
        assert_eq!(
            guard(
                r#"forbid(principal, action, resource) unless { context.cosigned && context.route == "x" } when { context.route == "gh" };"#
            ),
            vec![]
        );
        // `||` is not an atom.
        assert_eq!(guard(r#"forbid(principal, action, resource) when { context.route == "a" || context.route == "b" };"#), vec![]);
    }

    #[test]
    fn stats_count_how_policies_are_filed() {
        let s = slicer(
            r#"
            permit(principal, action == Action::"http/GET", resource);
            forbid(principal, action, resource) when { context.path like "/x/*" };
            forbid(principal, action, resource) when { context.chain_length > 3 };
            forbid(principal == Tenant::"t", action, resource);
            "#,
        );
        assert_eq!(s.stats(), SliceStats { policies: 4, indexed: 1, guarded: 1, unguarded: 1, never: 1 });
        let route = RouteFacts { name: "gh".into(), allow_writes: false, sensitive: false };
        let mut r = AuthzRequest {
            tenant: "t",
            agent: "did:key:z",
            method: "GET",
            route: &route,
            url: "https://h/x/1",
            host: "h",
            path: "/x/1",
            query: "",
            cosigned: false,
            chain_length: 1,
            token_ttl: 1,
            now: 1,
        };
        assert_eq!(s.selection(&r).len(), 3);
        r.method = "POST";
        r.path = "/y";
        assert_eq!(s.selection(&r).len(), 1, "only the unguarded policy");
    }

    /// The slicer reads each fact from `AuthzRequest` itself, apart from
    /// `cedar_inputs`, which builds what Cedar sees. With a different value
    /// in every field, a policy pinning one fact to the slicer's value must
    /// be allowed by Cedar and selected, and one pinning it to any other
    /// field's value must be neither.
    #[test]
    fn the_slicer_reads_each_fact_where_cedar_does() {
        use crate::authz::PolicyEngine;
        let route = RouteFacts { name: "rt".into(), allow_writes: false, sensitive: false };
        let r = AuthzRequest {
            tenant: "tn",
            agent: "did:key:ag",
            method: "PUT",
            route: &route,
            url: "https://h/pa?qu=1",
            host: "h",
            path: "/pa",
            query: "qu=1",
            cosigned: false,
            chain_length: 1,
            token_ttl: 1,
            now: 1,
        };
        // Every way a policy can pin a fact that the slicer files it under.
        let forms = |fact: Fact, v: &str| -> Vec<String> {
            let ctx = |attr: &str| format!(r#"permit(principal, action, resource) when {{ context.{attr} == "{v}" }};"#);
            match fact {
                Fact::Url => vec![format!(r#"permit(principal, action, resource == Endpoint::"{v}");"#)],
                Fact::Agent => vec![format!(r#"permit(principal == Agent::"{v}", action, resource);"#)],
                Fact::Path => vec![ctx("path")],
                Fact::Query => vec![ctx("query")],
                Fact::Route => vec![ctx("route"), format!(r#"permit(principal, action, resource in Route::"{v}");"#)],
                Fact::Tenant => vec![ctx("tenant"), format!(r#"permit(principal in Tenant::"{v}", action, resource);"#)],
                Fact::Method => vec![ctx("method"), format!(r#"permit(principal, action == Action::"http/{v}", resource);"#)],
                Fact::Tier => vec![ctx("tier")],
            }
        };
        let values: Vec<&str> = FACTS.iter().map(|f| f.of(&r)).collect();
        for (i, fact) in FACTS.iter().enumerate() {
            for (j, v) in values.iter().enumerate() {
                for text in forms(*fact, v) {
                    let Ok(engine) = PolicyEngine::from_sources(SCHEMA, &[("p.cedar", &text)]) else {
                        // An action outside the schema (`http/tn`, ...) cannot be written.
                        assert!(matches!(fact, Fact::Method) && i != j, "{text} does not validate");
                        continue;
                    };
                    let allowed = engine.evaluate_unsliced(&r).allowed;
                    let selected = !engine.slicer.selection(&r).is_empty();
                    assert_eq!(allowed, i == j, "Cedar on {text}");
                    assert_eq!(selected, i == j, "slicer on {text}");
                    let stats = engine.slicer.stats();
                    assert_eq!(stats.indexed + stats.guarded, 1, "{text} is filed by its fact");
                }
            }
        }
    }

    /// Slicing must never change a decision: random policies (scopes, atoms,
    /// non-atoms and conjuncts that error, in `when` and `unless`) are
    /// evaluated sliced and unsliced on random requests, alone and in sets.
    #[test]
    fn slicing_agrees_with_full_evaluation() {
        use crate::authz::{AuthzDecision, PolicyEngine};
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(0x51ce);
        let principals = [
            "principal",
            r#"principal == Agent::"A1""#,
            r#"principal in Tenant::"T1""#,
            r#"principal is Agent in Tenant::"T2""#,
            r#"principal in Agent::"A2""#,
            r#"principal is Agent"#,
        ];
        let actions = [
            "action",
            r#"action == Action::"http/GET""#,
            r#"action in [Action::"http/GET", Action::"http/POST"]"#,
            r#"action == Action::"http/DELETE""#,
        ];
        let resources =
            ["resource", r#"resource in Route::"r1""#, r#"resource == Endpoint::"https://h/a""#, r#"resource is Endpoint in Route::"r2""#];
        let atoms = [
            r#"context.route == "r1""#,
            r#""r2" == context.route"#,
            r#"context.route != "r1""#,
            r#"context.tenant == "T1""#,
            r#"context.method == "GET""#,
            r#"context.tier == "read""#,
            r#"context.query == """#,
            "context.cosigned",
            "!context.cosigned",
            "context.cosigned == false",
            // Not atoms: the walk must stop at them.
            "context.chain_length > 1",
            r#"(context.route == "r1" || context.cosigned)"#,
            "resource.route.allow_writes",
            r#"principal in Tenant::"T1""#,
            // Errors (overflow) whenever it is evaluated.
            "context.chain_length + 9223372036854775807 > 0",
        ];
        let pattern_chars = ["a", "b", "/", "*", "\\*", "é"];
        let path_chars = ["a", "b", "/", "*", "é"];
        let random_pattern = |rng: &mut StdRng| -> String {
            (0..rng.gen_range(0..5)).map(|_| pattern_chars[rng.gen_range(0..pattern_chars.len())]).collect()
        };
        let random_policy = |rng: &mut StdRng| -> String {
            let mut text = format!(
                "{} ({}, {}, {})",
                if rng.gen_bool(0.5) { "permit" } else { "forbid" },
                principals[rng.gen_range(0..principals.len())],
                actions[rng.gen_range(0..actions.len())],
                resources[rng.gen_range(0..resources.len())]
            );
            for _ in 0..rng.gen_range(0..3) {
                let chain: Vec<String> = (0..rng.gen_range(1..4))
                    .map(|_| {
                        if rng.gen_bool(0.25) {
                            format!("context.path like \"{}\"", random_pattern(rng))
                        } else {
                            atoms[rng.gen_range(0..atoms.len())].to_owned()
                        }
                    })
                    .collect();
                text.push_str(&format!(" {} {{ {} }}", if rng.gen_bool(0.7) { "when" } else { "unless" }, chain.join(" && ")));
            }
            text.push(';');
            text
        };
        let route_facts = [
            RouteFacts { name: "r1".into(), allow_writes: true, sensitive: false },
            RouteFacts { name: "r2".into(), allow_writes: false, sensitive: true },
        ];
        let paths: Vec<String> =
            (0..40).map(|_| (0..rng.gen_range(0..6)).map(|_| path_chars[rng.gen_range(0..path_chars.len())]).collect()).collect();
        let urls: Vec<String> = paths.iter().map(|p| format!("https://h{p}")).collect();
        let requests: Vec<AuthzRequest<'_>> = (0..60)
            .map(|i| {
                let p = if i % 10 == 0 { 0 } else { rng.gen_range(0..paths.len()) };
                AuthzRequest {
                    tenant: ["T1", "T2"][rng.gen_range(0..2)],
                    agent: ["A1", "A2"][rng.gen_range(0..2)],
                    method: ["GET", "POST", "DELETE", "TRACE"][rng.gen_range(0..4)],
                    route: &route_facts[rng.gen_range(0..2)],
                    url: if i % 10 == 0 { "https://h/a" } else { &urls[p] },
                    host: "h",
                    path: if i % 10 == 0 { "/a" } else { &paths[p] },
                    query: ["", "q=1"][rng.gen_range(0..2)],
                    cosigned: rng.gen_bool(0.5),
                    chain_length: rng.gen_range(1..4),
                    token_ttl: 30,
                    now: 1_700_000_000,
                }
            })
            .collect();
        let sorted = |mut d: AuthzDecision| {
            let mut ids = d.policy_ids.to_vec();
            ids.sort();
            d.policy_ids = ids.into();
            d
        };
        let (mut valid, mut skipped, mut decided_by, mut errored) = (0, 0, 0, 0);
        let mut pool = Vec::new();
        for n in 0..3000 {
            let text = format!("@id(\"p{n}\") {}", random_policy(&mut rng));
            let Ok(engine) = PolicyEngine::from_sources(SCHEMA, &[("p.cedar", &text)]) else { continue };
            valid += 1;
            pool.push(text.clone());
            for r in &requests {
                let full = engine.evaluate_unsliced(r);
                let sliced = engine.evaluate(r);
                assert_eq!(sliced, full, "{text}\n{r:?}");
                if engine.slicer.selection(r).is_empty() {
                    skipped += 1;
                }
                decided_by += usize::from(!full.policy_ids.is_empty());
                errored += usize::from(full.evaluation_error);
            }
        }
        assert!(valid >= 1000, "only {valid} random policies validated");
        assert!(
            skipped > 10_000 && decided_by > 5_000 && errored > 500,
            "coverage: {skipped} skipped, {decided_by} decided, {errored} errors"
        );
        // Sets of 25: the index and the subset cache together.
        for chunk in pool.chunks(25).take(40) {
            let text = chunk.join("\n");
            let engine = PolicyEngine::from_sources(SCHEMA, &[("set.cedar", &text)]).expect("valid policies stay valid together");
            for r in &requests {
                assert_eq!(sorted(engine.evaluate(r)), sorted(engine.evaluate_unsliced(r)), "{text}\n{r:?}");
            }
        }
    }
}
