//! The fields of a stored entry that queries filter on, read without parsing `data`, and the
//! one function that decides whether an entry matches a query (used by every backend's scans).

use std::borrow::Cow;

use custos_core::entry::{Outcome, Severity};
use serde::Deserialize;

use crate::EntryQuery;

/// A borrowed view of the filterable fields of canonical entry bytes.
#[derive(Debug, Deserialize)]
pub struct FilterView<'a> {
    /// Seq.
    pub seq: u64,
    /// Id.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Sequencing time.
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    /// Tenant.
    #[serde(borrow)]
    pub tenant: Cow<'a, str>,
    /// Actor.
    #[serde(borrow)]
    pub actor: Cow<'a, str>,
    /// Event type.
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
    /// Action.
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    /// Outcome.
    pub outcome: Outcome,
    /// Severity.
    pub severity: Severity,
    /// Resource.
    #[serde(borrow, default)]
    pub resource: Option<Cow<'a, str>>,
    /// Target.
    #[serde(borrow, default)]
    pub target: Option<Cow<'a, str>>,
    /// Trace id.
    #[serde(borrow, default)]
    pub trace_id: Option<Cow<'a, str>>,
    /// Session id.
    #[serde(borrow, default)]
    pub session_id: Option<Cow<'a, str>>,
}

impl<'a> FilterView<'a> {
    /// Reads the view from canonical entry bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Does this entry match every filter of `q` except the seq/time bounds (which scans apply
    /// as seq ranges)?
    pub fn matches(&self, q: &EntryQuery) -> bool {
        fn eq(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        fn eq_opt(want: &Option<String>, have: &Option<Cow<'_, str>>) -> bool {
            want.as_deref().is_none_or(|w| have.as_deref() == Some(w))
        }
        eq(&q.tenant, &self.tenant)
            && eq(&q.actor, &self.actor)
            && eq(&q.event_type, &self.event_type)
            && eq(&q.action, &self.action)
            && q.outcome.is_none_or(|o| o == self.outcome)
            && q.min_severity.is_none_or(|s| self.severity >= s)
            && match (&q.resource, &self.resource) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(w), Some(h)) if q.resource_prefix => h.starts_with(w.as_str()),
                (Some(w), Some(h)) => w == h,
            }
            && eq_opt(&q.target, &self.target)
            && eq_opt(&q.trace_id, &self.trace_id)
            && eq_opt(&q.session_id, &self.session_id)
    }
}
