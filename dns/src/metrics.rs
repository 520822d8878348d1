//! DNS metrics: queries by type and response code, and answer-set changes. Counters are
//! created once, so the query path only increments an atomic.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use hickory_server::proto::rr::RecordType;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    pub qtype: String,
    pub rcode: String,
}

const QTYPES: [&str; 7] = ["A", "AAAA", "SOA", "NS", "ANY", "other", "none"];
const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
];
const RCODE_BADVERS: u16 = 16;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub action: &'static str,
}

/// What happened to rate-limited responses, indexed as in [`Tally`].
const LIMIT_ACTIONS: [&str; 2] = ["dropped", "slipped"];

#[derive(Clone)]
pub struct Metrics {
    queries: Family<QueryLabels, Counter>,
    /// Pre-created handles into `queries`, indexed [qtype][rcode].
    handles: Vec<Vec<Counter>>,
    pub answer_set_changes: Counter,
    rate_limited: Family<LimitLabels, Counter>,
    /// Pre-created handles into `rate_limited`, indexed as `LIMIT_ACTIONS`.
    limit_handles: Vec<Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let queries = Family::<QueryLabels, Counter>::default();
        let handles = QTYPES
            .iter()
            .map(|t| {
                RCODES
                    .iter()
                    .map(|r| {
                        queries
                            .get_or_create(&QueryLabels {
                                qtype: (*t).into(),
                                rcode: (*r).into(),
                            })
                            .clone()
                    })
                    .collect()
            })
            .collect();
        let rate_limited = Family::<LimitLabels, Counter>::default();
        let limit_handles = LIMIT_ACTIONS
            .iter()
            .map(|action| rate_limited.get_or_create(&LimitLabels { action }).clone())
            .collect();
        Self {
            queries,
            handles,
            answer_set_changes: Counter::default(),
            rate_limited,
            limit_handles,
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dns_queries",
            "DNS queries answered, by query type and response code",
            self.queries.clone(),
        );
        registry.register(
            "dns_answer_set_changes",
            "Times the set of answered addresses changed",
            self.answer_set_changes.clone(),
        );
        registry.register(
            "dns_rate_limited",
            "UDP responses over a client prefix's rate limit: dropped, or slipped (sent truncated)",
            self.rate_limited.clone(),
        );
    }

    /// Counts one answered query (`qtype` 0: no question could be read; `rcode` with the
    /// EDNS extended bits).
    pub fn count(&self, qtype: u16, rcode: u16) {
        let (t, r) = index(qtype, rcode);
        self.handles[t][r].inc();
    }

    /// Adds what a hot-path thread counted locally, and resets its tally.
    pub fn add(&self, tally: &mut Tally) {
        for (counter, n) in self.limit_handles.iter().zip(&mut tally.limited) {
            if *n > 0 {
                counter.inc_by(std::mem::take(n));
            }
        }
        for (t, row) in tally.queries.iter_mut().enumerate() {
            for (r, n) in row.iter_mut().enumerate() {
                if *n > 0 {
                    self.handles[t][r].inc_by(std::mem::take(n));
                }
            }
        }
    }
}

/// Query counts kept by one hot-path thread and added to the shared counters once per batch:
/// an atomic increment per query would bounce the counters' cache lines between the cores.
#[derive(Default)]
pub struct Tally {
    queries: [[u64; RCODES.len()]; QTYPES.len()],
    /// Rate-limited responses: dropped, slipped.
    limited: [u64; LIMIT_ACTIONS.len()],
}

impl Tally {
    pub fn count(&mut self, qtype: u16, rcode: u16) {
        let (t, r) = index(qtype, rcode);
        self.queries[t][r] += 1;
    }

    pub fn limited(&mut self, slipped: bool) {
        self.limited[usize::from(slipped)] += 1;
    }
}

/// [qtype][rcode] position of a query's counter.
fn index(qtype: u16, rcode: u16) -> (usize, usize) {
    let t = match (qtype, RecordType::from(qtype)) {
        (0, _) => 6,
        (_, RecordType::A) => 0,
        (_, RecordType::AAAA) => 1,
        (_, RecordType::SOA) => 2,
        (_, RecordType::NS) => 3,
        (_, RecordType::ANY) => 4,
        _ => 5,
    };
    let r = match rcode {
        0..=5 => rcode as usize,
        RCODE_BADVERS => 6,
        _ => 7,
    };
    (t, r)
}
