//! Whether a finished run measured the load it was asked for. A run whose publications the API
//! refused (a wrong `--api-url` answers 404 to every one) or whose subscribers received nothing
//! they were owed has no delivery or latency figures worth keeping, and must not pass for a
//! result. Decides from the summary alone; printing and the exit code are the binary's.

use std::fmt;

use crate::summary::Summary;

/// Share of publish requests that may fail before a run is refused. Above it the delivery and
/// latency figures describe a lighter load than the one asked for; below it a few failures
/// (a request timing out under overload) still leave a comparable run, with the failures counted
/// in `publish.errors`.
pub const MAX_PUBLISH_ERROR_SHARE: f64 = 0.01;

/// Why a run's figures cannot stand for the load asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// More than [`MAX_PUBLISH_ERROR_SHARE`] of the publish requests failed.
    PublishRefused {
        /// Publications the API accepted.
        accepted: u64,
        /// Publish requests sent.
        sent: u64,
        /// The first failure, as the publisher saw it.
        first_error: Option<String>,
    },
    /// Publications were accepted for subscribers that received none of them.
    NothingDelivered {
        /// Deliveries the subscribers were owed.
        expected: u64,
        /// Publications accepted.
        published: u64,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::PublishRefused {
                accepted,
                sent,
                first_error,
            } => {
                write!(f, "{accepted} of {sent} publications accepted by the API")?;
                if *accepted > 0 {
                    let allowed = MAX_PUBLISH_ERROR_SHARE * 100.0;
                    write!(f, ", more than {allowed}% failed")?;
                }
                match first_error {
                    Some(e) => write!(f, " (first error: {e})"),
                    None => Ok(()),
                }
            }
            Failure::NothingDelivered {
                expected,
                published,
            } => write!(
                f,
                "0 of {expected} expected deliveries arrived ({published} publications accepted): \
                 no delivery measured"
            ),
        }
    }
}

/// Checks a finished run: publish failures first (they explain missing deliveries), then
/// deliveries owed but never received. Scenarios without publications (idle, churn) pass.
pub fn check(s: &Summary) -> Result<(), Failure> {
    let p = &s.publish;
    if p.sent > 0 && p.errors as f64 > p.sent as f64 * MAX_PUBLISH_ERROR_SHARE {
        return Err(Failure::PublishRefused {
            accepted: s.published,
            sent: p.sent,
            first_error: p.first_error.clone(),
        });
    }
    if s.expected_deliveries > 0 && s.delivered == 0 {
        return Err(Failure::NothingDelivered {
            expected: s.expected_deliveries,
            published: s.published,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::PublishStats;

    /// A broadcast run: `sent` requests of which `errors` failed, `delivered` of the deliveries
    /// owed to 10 subscribers arrived.
    fn run(sent: u64, errors: u64, delivered: u64) -> Summary {
        let accepted = sent - errors;
        Summary {
            scenario: "broadcast".into(),
            published: accepted,
            expected_deliveries: accepted * 10,
            delivered,
            publish: PublishStats {
                sent,
                errors,
                first_error: (errors > 0).then(|| {
                    "404 Not Found at http://127.0.0.1:1/api/publish: not found".to_owned()
                }),
                ..PublishStats::default()
            },
            ..Summary::default()
        }
    }

    #[test]
    fn a_run_whose_every_publication_was_refused_fails_with_the_first_error() {
        let e = check(&run(250, 250, 0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "0 of 250 publications accepted by the API (first error: 404 Not Found at \
             http://127.0.0.1:1/api/publish: not found)"
        );
    }

    #[test]
    fn publish_failures_above_one_percent_fail_the_run() {
        assert_eq!(check(&run(1000, 10, 9_900)), Ok(()), "1% is allowed");
        let e = check(&run(1000, 11, 9_890)).unwrap_err();
        assert!(matches!(
            e,
            Failure::PublishRefused {
                accepted: 989,
                sent: 1000,
                ..
            }
        ));
        assert!(e.to_string().contains("more than 1% failed"), "{e}");
    }

    #[test]
    fn deliveries_owed_but_none_received_fail_the_run() {
        let e = check(&run(100, 0, 0)).unwrap_err();
        assert_eq!(
            e,
            Failure::NothingDelivered {
                expected: 1000,
                published: 100
            }
        );
        assert!(e
            .to_string()
            .starts_with("0 of 1000 expected deliveries arrived"));
        assert_eq!(
            check(&run(100, 0, 1)),
            Ok(()),
            "losses are figures, not failures"
        );
    }

    #[test]
    fn runs_without_publications_pass() {
        let idle = Summary {
            scenario: "idle".into(),
            connections: 50,
            ..Summary::default()
        };
        assert_eq!(check(&idle), Ok(()));
    }
}
