//! A connection's control mailbox: cluster-wide commands (disconnect,
//! subscribe, unsubscribe, refresh) addressed to it, waiting for its session.
//! Bounded; it does not wake anyone (the outbox does).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use herald_core::control;

/// Control commands a session keeps before it counts as stalled.
pub const MAX_PENDING_CONTROL: usize = 64;

/// Pending control commands, oldest first.
#[derive(Debug, Default)]
pub struct Mailbox {
    commands: Mutex<VecDeque<control::Command>>,
    /// Whether `commands` may hold a command (spares the lock on every wake-up).
    has_mail: AtomicBool,
}

impl Mailbox {
    /// Adds a command; false when the mailbox is full.
    pub fn put(&self, command: control::Command) -> bool {
        let mut commands = self.commands.lock().expect("poisoned");
        if commands.len() >= MAX_PENDING_CONTROL {
            return false;
        }
        commands.push_back(command);
        self.has_mail.store(true, Ordering::Release);
        true
    }

    /// Takes the oldest command.
    pub fn take(&self) -> Option<control::Command> {
        if !self.has_mail.load(Ordering::Acquire) {
            return None;
        }
        let mut commands = self.commands.lock().expect("poisoned");
        let command = commands.pop_front();
        if commands.is_empty() {
            self.has_mail.store(false, Ordering::Release);
        }
        command
    }
}
