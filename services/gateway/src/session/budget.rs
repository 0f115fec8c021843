//! A connection's command budget (`client.commands_per_second`): a token
//! bucket holding one second's worth of commands. A command over the budget
//! is answered with error 111 and runs the bucket into debt; a client that
//! keeps sending until the debt passes another second's worth is closed with
//! 3013 (both tell SDKs to retry later). Eight bytes per connection.

/// Tokens and the time they were counted (milliseconds on the gateway's clock).
#[derive(Debug, Default, Clone, Copy)]
pub struct Budget {
    tokens: f32,
    counted_ms: u32,
}

/// What a command may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Spend {
    /// Run it.
    Run,
    /// Answer it with error 111.
    Refuse,
    /// Close the connection with 3013.
    Close,
}

impl Budget {
    /// A full budget at `now_ms` for `per_second` commands.
    pub fn new(per_second: u32, now_ms: u32) -> Budget {
        Budget {
            tokens: per_second as f32,
            counted_ms: now_ms,
        }
    }

    /// Spends one command at `now_ms`.
    pub fn spend(&mut self, per_second: u32, now_ms: u32) -> Spend {
        let limit = per_second as f32;
        let elapsed = now_ms.wrapping_sub(self.counted_ms);
        self.counted_ms = now_ms;
        self.tokens = (self.tokens + elapsed as f32 * limit / 1000.0).min(limit);
        let run = self.tokens >= 1.0;
        self.tokens -= 1.0;
        if run {
            Spend::Run
        } else if self.tokens < -limit {
            Spend::Close
        } else {
            Spend::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_runs_one_seconds_worth_then_refuses_then_closes() {
        let mut budget = Budget::new(5, 0);
        let spent: Vec<Spend> = (0..11).map(|_| budget.spend(5, 10)).collect();
        assert!(spent[..5].iter().all(|s| *s == Spend::Run), "{spent:?}");
        assert!(
            spent[5..10].iter().all(|s| *s == Spend::Refuse),
            "{spent:?}"
        );
        assert_eq!(spent[10], Spend::Close);
    }

    #[test]
    fn time_pays_the_debt_back() {
        let mut budget = Budget::new(2, 0);
        assert_eq!(budget.spend(2, 0), Spend::Run);
        assert_eq!(budget.spend(2, 0), Spend::Run);
        assert_eq!(budget.spend(2, 0), Spend::Refuse);
        // A second later: two tokens earned, one of them pays the debt.
        assert_eq!(budget.spend(2, 1000), Spend::Run);
        assert_eq!(budget.spend(2, 1000), Spend::Refuse);
    }

    #[test]
    fn the_clock_may_wrap() {
        let mut budget = Budget::new(1, u32::MAX - 10);
        assert_eq!(budget.spend(1, u32::MAX - 10), Spend::Run);
        assert_eq!(budget.spend(1, 1000), Spend::Run);
    }
}
