//! Call budgets, per route and ability (`[[budgets]]` in the config):
//! - `max_calls`: calls per delegation (the proof CID the agent holds; the
//!   agent DID for a root-issued invocation) within that delegation's life;
//! - `rate_per_minute` with `burst`: a token bucket per agent.
//!
//! Exceeding either gives `429 budget_exhausted` with `Retry-After`.
//! Counters go through the state-store seam ([`crate::state_store`]); the
//! embedded store keeps them in memory, so they restart from zero when the
//! process restarts (a shared backend would keep them).

use crate::config::BudgetSection;
use crate::refusal::Refusal;
use capgate_filters::ucan::{Ability, VerifiedChain};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct Budgets {
    rules: Vec<(BudgetSection, Ability)>,
    buckets: Mutex<HashMap<(usize, String), Bucket>>,
    store: std::sync::Arc<dyn crate::state_store::StateStore>,
}

impl Budgets {
    pub fn new(rules: &[BudgetSection], store: std::sync::Arc<dyn crate::state_store::StateStore>) -> Result<Self, String> {
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let a = Ability::parse(&r.ability).map_err(|_| format!("budgets[{i}].ability is not an ability"))?;
            out.push((r.clone(), a));
        }
        Ok(Budgets { rules: out, buckets: Mutex::new(HashMap::new()), store })
    }

    /// Count this call against every matching budget.
    pub fn check(&self, route: &str, method: &str, chain: &VerifiedChain, now: u64) -> Result<(), Refusal> {
        for (i, (rule, ability)) in self.rules.iter().enumerate() {
            if rule.route != route || !ability.allows_method(method) {
                continue;
            }
            if let Some(max) = rule.max_calls {
                let (holder, expires) = match chain.links.get(1) {
                    Some(p) => (p.cid.to_string(), p.expires),
                    None => (chain.agent().to_owned(), chain.invocation.expires),
                };
                let key = format!("calls/{i}/{holder}");
                let n = self
                    .store
                    .incr_counter(&key, expires)
                    .map_err(|_| Refusal::new(503, "state_unavailable", "budget counters are unavailable"))?;
                if n > max {
                    let mut r = Refusal::new(429, "budget_exhausted", format!("this delegation may make at most {max} such calls"));
                    r.retry_after = Some(expires.saturating_sub(now).max(1));
                    return Err(r);
                }
            }
            if let Some(rate) = rule.rate_per_minute {
                let per_sec = rate as f64 / 60.0;
                let burst = rule.burst.unwrap_or(rate).max(1) as f64;
                let mut buckets = self.buckets.lock().map_err(|_| Refusal::new(503, "state_unavailable", "rate state"))?;
                let b = buckets.entry((i, chain.agent().to_owned())).or_insert(Bucket { tokens: burst, last: Instant::now() });
                let t = Instant::now();
                b.tokens = (b.tokens + t.duration_since(b.last).as_secs_f64() * per_sec).min(burst);
                b.last = t;
                if b.tokens < 1.0 {
                    let mut r = Refusal::new(429, "budget_exhausted", format!("at most {rate} such calls per minute per agent"));
                    r.retry_after = Some(((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64);
                    return Err(r);
                }
                b.tokens -= 1.0;
            }
        }
        Ok(())
    }
}
