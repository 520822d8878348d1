//! A bounded history of ALB state transitions, for `mzlb events`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::registry::AlbState;

/// How many transitions are kept; older ones are forgotten.
const CAPACITY: usize = 1000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub alb: String,
    pub from: AlbState,
    pub to: AlbState,
    pub cause: String,
}

#[derive(Debug, Default)]
pub struct Events {
    recent: VecDeque<Event>,
}

impl Events {
    pub fn push(&mut self, event: Event) {
        if self.recent.len() == CAPACITY {
            self.recent.pop_front();
        }
        self.recent.push_back(event);
    }

    /// Oldest first.
    pub fn list(&self) -> Vec<Event> {
        self.recent.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_most_recent() {
        let mut events = Events::default();
        for i in 0..CAPACITY + 5 {
            events.push(Event {
                at_ms: i as u64,
                alb: "a".into(),
                from: AlbState::Enabled,
                to: AlbState::Unhealthy,
                cause: String::new(),
            });
        }
        let list = events.list();
        assert_eq!(list.len(), CAPACITY);
        assert_eq!(list[0].at_ms, 5);
    }
}
