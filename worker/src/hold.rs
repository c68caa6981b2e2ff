//! How long the worker may still act on messages it received: the hold on them, its
//! deadline, and the timing that keeps it safe.
//!
//! A received message is hidden from other consumers for the visibility timeout, and
//! SQS FIFO releases no further message of its group while it is hidden. That is the
//! only thing that keeps a group on one consumer. Once the timeout passes, SQS may
//! hand the group to another consumer, so a worker that delivers a message after its
//! hold lapsed (because the process was stopped, starved or cut off) breaks the
//! group's order. SQS does not tell a consumer that its hold lapsed; the worker has
//! to know the deadline itself.
//!
//! The deadline is counted from before the receive was sent: SQS starts the timeout
//! when it returns the message, which is never earlier than that. Only an extension
//! that SQS accepted moves it, again counted from before the request was sent. A
//! hold found lapsed (with a safety margin) or refused an extension is lost for good.
//!
//! Times are `tokio::time::Instant`, so tests can run this on tokio's paused clock.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// SQS's largest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// The worker's timing, all derived from the visibility timeout it receives with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// How long a receive or an extension hides a message (whole seconds, as SQS
    /// takes it).
    pub visibility: Duration,
    /// A hold with less than this left is treated as lapsed: no handler call starts
    /// on it. It covers the time between the check and the handler receiving the
    /// request, and an extension's round trip.
    pub margin: Duration,
    /// Holds with less than this left are extended.
    pub renew_below: Duration,
    /// How often the extender looks at the holds.
    pub tick: Duration,
    /// Long-poll wait: at most a third of the visibility timeout, so a message that
    /// arrives at the end of a poll is still held for two thirds of it.
    pub wait: Duration,
}

impl Timing {
    /// Timing for messages received with `visibility` (at least 3 s, at most 12 h)
    /// and long polls of up to `wait`.
    pub fn new(visibility: Duration, wait: Duration) -> Self {
        let visibility = Duration::from_secs(
            visibility
                .clamp(Duration::from_secs(3), MAX_VISIBILITY)
                .as_secs(),
        );
        // Whole seconds, rounded down: SQS takes the wait in seconds too.
        let wait = Duration::from_secs(
            wait.min(visibility / 3)
                .min(Duration::from_secs(20))
                .as_secs(),
        );
        // Looking every sixth and renewing below half leaves at least a third
        // between renewals and the deadline, twice the margin.
        Self {
            visibility,
            margin: visibility / 6,
            renew_below: visibility / 2,
            tick: visibility / 6,
            wait,
        }
    }
}

/// Why a hold was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lapse {
    /// Its deadline, less the margin, passed: SQS may already have handed the
    /// messages to another consumer.
    Expired,
    /// SQS refused to extend the visibility of one of its messages.
    Refused,
}

impl Lapse {
    /// For logs.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Expired => {
                "the visibility timeout ran out before the messages were done (was the process stopped or starved?)"
            }
            Self::Refused => "SQS refused to extend the visibility of its messages",
        }
    }
}

/// The hold a worker has on one message group's messages from one receive.
#[derive(Debug)]
pub(crate) struct Hold {
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    until: Instant,
    lost: Option<Lapse>,
}

/// A hold was found lost. `first` is true for the caller that found it so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lost {
    pub lapse: Lapse,
    pub first: bool,
}

impl Hold {
    /// The hold of messages from a receive sent at `sent`.
    pub fn received(sent: Instant, timing: &Timing) -> Self {
        Self {
            state: Mutex::new(State {
                until: sent + timing.visibility,
                lost: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain values, consistent after any panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a handler call may start at `now`: the hold is not lost and has more
    /// than `margin` left. Otherwise the hold is lost from now on.
    pub fn check(&self, now: Instant, margin: Duration) -> Result<(), Lost> {
        let mut state = self.state();
        if let Some(lapse) = state.lost {
            return Err(Lost {
                lapse,
                first: false,
            });
        }
        if now + margin >= state.until {
            state.lost = Some(Lapse::Expired);
            return Err(Lost {
                lapse: Lapse::Expired,
                first: true,
            });
        }
        Ok(())
    }

    /// Whether the extender should extend this hold at `now` (it is valid and has
    /// less than `renew_below` left). A hold found lapsed is lost, as in [`Hold::check`].
    pub fn due(&self, now: Instant, timing: &Timing) -> Result<bool, Lost> {
        self.check(now, timing.margin)?;
        Ok(self.state().until < now + timing.renew_below)
    }

    /// SQS accepted an extension by `timing.visibility` sent at `sent`. A lost
    /// hold stays lost: its messages may be someone else's by now.
    pub fn extended(&self, sent: Instant, timing: &Timing) {
        let mut state = self.state();
        if state.lost.is_none() {
            state.until = state.until.max(sent + timing.visibility);
        }
    }

    /// SQS refused an extension; returns true if that lost the hold.
    pub fn refused(&self) -> bool {
        let mut state = self.state();
        let first = state.lost.is_none();
        state.lost.get_or_insert(Lapse::Refused);
        first
    }

    /// Whether the messages are certainly still this worker's at `now`: the hold was
    /// never refused and its deadline has not passed. Only then may the worker change
    /// their visibility: once the deadline passed, their receipt handles may be stale
    /// and the messages in another consumer's hands.
    pub fn still_ours(&self, now: Instant) -> bool {
        let state = self.state();
        state.lost != Some(Lapse::Refused) && now < state.until
    }

    /// Why the hold was lost, if it was.
    #[cfg(test)]
    pub fn lost(&self) -> Option<Lapse> {
        self.state().lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn timing(visibility: u64) -> Timing {
        Timing::new(Duration::from_secs(visibility), Duration::from_secs(20))
    }

    #[test]
    fn timing_follows_the_visibility_timeout() {
        let t = timing(60);
        assert_eq!(
            (t.visibility, t.margin, t.renew_below, t.tick, t.wait),
            (
                60 * SECOND,
                10 * SECOND,
                30 * SECOND,
                10 * SECOND,
                20 * SECOND
            )
        );
        let t = timing(6);
        assert_eq!((t.margin, t.wait), (SECOND, 2 * SECOND), "short polls");
        assert_eq!(timing(0).visibility, 3 * SECOND, "never below 3 s");
        assert_eq!(timing(100_000).visibility, MAX_VISIBILITY);
        let fractional = Timing::new(Duration::from_millis(5900), Duration::from_secs(20));
        assert_eq!(
            fractional.visibility,
            5 * SECOND,
            "whole seconds, rounded down"
        );
        let configured = Timing::new(60 * SECOND, 5 * SECOND);
        assert_eq!(
            configured.wait,
            5 * SECOND,
            "a shorter configured wait stays"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_lapses_at_its_deadline_less_the_margin() {
        let t = timing(6);
        let sent = Instant::now();
        let hold = Hold::received(sent, &t);
        tokio::time::advance(4 * SECOND).await;
        assert_eq!(hold.check(Instant::now(), t.margin), Ok(()));
        tokio::time::advance(SECOND).await;
        // 5 s after the receive was sent, 1 s left: no handler call starts.
        assert_eq!(
            hold.check(Instant::now(), t.margin),
            Err(Lost {
                lapse: Lapse::Expired,
                first: true
            })
        );
        assert!(hold.still_ours(Instant::now()), "SQS still hides them");
        assert_eq!(
            hold.check(Instant::now(), t.margin),
            Err(Lost {
                lapse: Lapse::Expired,
                first: false
            }),
            "reported lost once"
        );
        tokio::time::advance(SECOND).await;
        assert!(!hold.still_ours(Instant::now()), "past the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn only_an_accepted_extension_moves_the_deadline() {
        let t = timing(6);
        let hold = Hold::received(Instant::now(), &t);
        tokio::time::advance(3 * SECOND).await;
        let sent = Instant::now();
        // The answer came 1 s later; the deadline counts from when it was sent.
        tokio::time::advance(SECOND).await;
        hold.extended(sent, &t);
        tokio::time::advance(3 * SECOND).await;
        assert_eq!(
            hold.check(Instant::now(), t.margin),
            Ok(()),
            "7 s in, 2 s left"
        );
        tokio::time::advance(SECOND).await;
        assert!(
            hold.check(Instant::now(), t.margin).is_err(),
            "8 s in, 1 s left"
        );
        // An extension that arrives after the hold was found lapsed does not revive it.
        hold.extended(Instant::now(), &t);
        assert!(hold.check(Instant::now(), t.margin).is_err());
        assert_eq!(hold.lost(), Some(Lapse::Expired));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_extension_loses_the_hold_at_once() {
        let t = timing(60);
        let hold = Hold::received(Instant::now(), &t);
        assert!(hold.refused());
        assert!(!hold.refused(), "lost once");
        assert_eq!(
            hold.check(Instant::now(), t.margin),
            Err(Lost {
                lapse: Lapse::Refused,
                first: false
            })
        );
        assert!(
            !hold.still_ours(Instant::now()),
            "its receipt handles are stale"
        );
        hold.extended(Instant::now(), &t);
        assert_eq!(hold.lost(), Some(Lapse::Refused));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_stall_the_extender_does_not_extend_a_lapsed_hold() {
        let t = timing(10);
        let hold = Hold::received(Instant::now(), &t);
        tokio::time::advance(2 * SECOND).await;
        assert_eq!(hold.due(Instant::now(), &t), Ok(false), "8 s left: not yet");
        tokio::time::advance(4 * SECOND).await;
        assert_eq!(hold.due(Instant::now(), &t), Ok(true), "4 s left: renew");
        // The process was stopped for 25 s before the extender ran.
        tokio::time::advance(25 * SECOND).await;
        assert!(hold.due(Instant::now(), &t).is_err());
        assert!(hold.check(Instant::now(), t.margin).is_err());
    }

    /// A healthy worker never finds its own hold lapsed: whatever the phase of the
    /// extender's ticks against the receive, and however late in a long poll the
    /// message arrived, every moment from the receive's answer on keeps more than the
    /// margin left, with extensions answered after up to `latency`.
    #[tokio::test(start_paused = true)]
    async fn a_healthy_worker_keeps_its_holds() {
        for visibility in [3, 5, 6, 10, 30, 60] {
            let t = timing(visibility);
            let latency = t.margin / 2;
            let step = Duration::from_millis(50);
            let phases = (t.tick.as_millis() / step.as_millis()) as u32;
            for phase in 0..phases {
                let origin = Instant::now();
                let hold = Hold::received(origin, &t);
                // The answer of a poll that waited as long as it may.
                let answered = origin + t.wait + latency;
                let mut next_tick = origin + step * phase;
                let mut now = answered;
                while now < origin + t.visibility * 10 {
                    while next_tick <= now {
                        if next_tick >= answered && hold.due(next_tick, &t) == Ok(true) {
                            hold.extended(next_tick, &t);
                        }
                        next_tick += t.tick + latency;
                    }
                    assert_eq!(
                        hold.check(now, t.margin),
                        Ok(()),
                        "visibility {visibility}s, phase {phase}, {:?} in",
                        now - origin
                    );
                    now += step;
                }
            }
        }
    }
}
