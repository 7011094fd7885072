//! Streamed export (SPEC §3.6) in JSON, JSON Lines, CSV and CloudEvents 1.0, and the summary
//! aggregation for a period. Both page through the store, so memory stays constant whatever
//! the range.

use std::collections::BTreeMap;
use std::io::Write;

use custos_core::entry::Severity;
use custos_store::{EntryQuery, FilterView, MAX_QUERY_LIMIT, RawRecord, Store};
use serde::Serialize;

use crate::{LedgerError, Result, parse_record};

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON array of entries.
    Json,
    /// One entry per line.
    JsonLines,
    /// RFC 4180 CSV with a header row; `data` and `request` as JSON text.
    Csv,
    /// CloudEvents 1.0 structured-mode JSON, one event per line.
    CloudEvents,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "jsonl" | "ndjson" => Ok(Format::JsonLines),
            "csv" => Ok(Format::Csv),
            "cloudevents" => Ok(Format::CloudEvents),
            other => Err(format!(
                "unknown export format `{other}` (expected json, jsonl, csv or cloudevents)"
            )),
        }
    }
}

/// Which entries to export or summarise.
#[derive(Clone, Debug, Default)]
pub struct Range {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// From this time (inclusive), nanoseconds since the epoch.
    pub start: Option<i128>,
    /// Until this time (exclusive).
    pub end: Option<i128>,
}

/// Calls `visit` for every entry in `range`, in seq order, a page at a time.
fn for_each<S: Store>(
    store: &S,
    range: &Range,
    mut visit: impl FnMut(&RawRecord) -> Result<()>,
) -> Result<u64> {
    let mut query = EntryQuery {
        tenant: range.tenant.clone(),
        start: range.start,
        end: range.end,
        limit: MAX_QUERY_LIMIT,
        ..EntryQuery::default()
    };
    let mut count = 0u64;
    loop {
        let page = store.query(&query)?;
        for rec in &page.records {
            visit(rec)?;
            count += 1;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(count),
        }
    }
}

const CSV_COLUMNS: [&str; 20] = [
    "seq",
    "id",
    "ts",
    "client_ts",
    "tenant",
    "event_type",
    "actor",
    "action",
    "resource",
    "target",
    "outcome",
    "severity",
    "policy_decision",
    "matched_rule",
    "trace_id",
    "session_id",
    "request_ip",
    "request_user_agent",
    "data",
    "prev_hash",
];

fn csv_field(out: &mut Vec<u8>, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

fn io_err(e: std::io::Error) -> LedgerError {
    LedgerError::Output(e)
}

/// Writes every entry in `range` to `out` in `format`; returns how many.
/// `origin` names the log in CloudEvents `source` (`custos://<origin>/<actor>`).
pub fn export<S: Store>(
    store: &S,
    origin: &str,
    format: Format,
    range: &Range,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut first = true;
    match format {
        Format::Json => buf.push(b'['),
        Format::Csv => {
            buf.extend_from_slice(CSV_COLUMNS.join(",").as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
    let count = for_each(store, range, |rec| {
        match format {
            Format::Json => {
                if !first {
                    buf.push(b',');
                }
                buf.push(b'\n');
                buf.extend_from_slice(&rec.bytes);
            }
            Format::JsonLines => {
                buf.extend_from_slice(&rec.bytes);
                buf.push(b'\n');
            }
            Format::CloudEvents => {
                let v = FilterView::parse(&rec.bytes).map_err(|e| {
                    LedgerError::Store(custos_store::StoreError::Corrupt {
                        seq: rec.seq,
                        problem: e.to_string(),
                    })
                })?;
                let head = serde_json::json!({
                    "specversion": "1.0",
                    "id": v.id,
                    "source": format!("custos://{origin}/{}", v.actor),
                    "type": format!("dev.custos.{}", v.event_type),
                    "time": v.ts,
                    "datacontenttype": "application/json",
                });
                let mut head = serde_json::to_vec(&head)
                    .map_err(|e| LedgerError::BadRequest(e.to_string()))?;
                head.pop();
                buf.extend_from_slice(&head);
                if let Some(subject) = &v.resource {
                    buf.extend_from_slice(b",\"subject\":");
                    buf.extend_from_slice(
                        serde_json::to_string(subject.as_ref())
                            .map_err(|e| LedgerError::BadRequest(e.to_string()))?
                            .as_bytes(),
                    );
                }
                buf.extend_from_slice(b",\"data\":");
                buf.extend_from_slice(&rec.bytes);
                buf.extend_from_slice(b"}\n");
            }
            Format::Csv => {
                let e = parse_record(rec.seq, &rec.bytes)?;
                let data = serde_json::to_string(&e.data).unwrap_or_default();
                let req = e.request.clone().unwrap_or_default();
                let cols: [&str; 20] = [
                    &e.seq.to_string(),
                    &e.id,
                    &e.ts,
                    e.client_ts.as_deref().unwrap_or(""),
                    &e.tenant,
                    &e.event_type,
                    &e.actor,
                    &e.action,
                    e.resource.as_deref().unwrap_or(""),
                    e.target.as_deref().unwrap_or(""),
                    e.outcome.as_str(),
                    e.severity.as_str(),
                    e.policy_decision.as_deref().unwrap_or(""),
                    e.matched_rule.as_deref().unwrap_or(""),
                    e.trace_id.as_deref().unwrap_or(""),
                    e.session_id.as_deref().unwrap_or(""),
                    req.ip.as_deref().unwrap_or(""),
                    req.user_agent.as_deref().unwrap_or(""),
                    &data,
                    &e.prev_hash,
                ];
                for (i, c) in cols.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    csv_field(&mut buf, c);
                }
                buf.extend_from_slice(b"\r\n");
            }
        }
        first = false;
        if buf.len() >= 60 * 1024 {
            out.write_all(&buf).map_err(io_err)?;
            buf.clear();
        }
        Ok(())
    })?;
    if format == Format::Json {
        buf.extend_from_slice(if first { b"]\n" as &[u8] } else { b"\n]\n" });
    }
    out.write_all(&buf).map_err(io_err)?;
    out.flush().map_err(io_err)?;
    Ok(count)
}

/// Counts for a period (SPEC §3.6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Entries in the period.
    pub total: u64,
    /// Entries of severity high or critical.
    pub high_severity: u64,
    /// By event type.
    pub by_event_type: BTreeMap<String, u64>,
    /// By severity.
    pub by_severity: BTreeMap<String, u64>,
    /// By actor.
    pub by_actor: BTreeMap<String, u64>,
    /// By resource (entries without one are not counted here).
    pub by_resource: BTreeMap<String, u64>,
    /// By outcome.
    pub by_outcome: BTreeMap<String, u64>,
}

/// Aggregates the entries in `range`.
pub fn summary<S: Store>(store: &S, range: &Range) -> Result<Summary> {
    let mut s = Summary::default();
    fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
        match map.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                map.insert(key.to_owned(), 1);
            }
        }
    }
    s.total = for_each(store, range, |rec| {
        let v = FilterView::parse(&rec.bytes).map_err(|e| {
            LedgerError::Store(custos_store::StoreError::Corrupt {
                seq: rec.seq,
                problem: e.to_string(),
            })
        })?;
        bump(&mut s.by_event_type, &v.event_type);
        bump(&mut s.by_severity, v.severity.as_str());
        bump(&mut s.by_actor, &v.actor);
        if let Some(r) = &v.resource {
            bump(&mut s.by_resource, r);
        }
        bump(&mut s.by_outcome, v.outcome.as_str());
        if v.severity >= Severity::High {
            s.high_severity += 1;
        }
        Ok(())
    })?;
    Ok(s)
}
