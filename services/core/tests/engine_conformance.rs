//! The engine contract, one suite run against every engine: the memory engine,
//! a real standalone `redis-server` and a real 3-master Redis Cluster. Publish
//! and history, idempotent publishing, presence, join/leave, control commands,
//! node discovery, emulation requests sent to one node, exactly-once delivery in offset order and the trace context
//! a publication carries to every node. What only one
//! engine does (Redis reconnects, key expiry, debounced unsubscribes, the
//! memory sweeper) is tested in that engine's own file.
//!
//! The contract functions live in `engine_conformance/` by area; this file holds what they
//! share and runs each of them once per engine.

#[path = "support/recorder.rs"]
mod recorder;

#[path = "support/backend.rs"]
mod backend;

#[path = "engine_conformance/delivery.rs"]
mod delivery;
#[path = "engine_conformance/emulation.rs"]
mod emulation;
#[path = "engine_conformance/history.rs"]
mod history;
#[path = "engine_conformance/presence.rs"]
mod presence;

use std::time::Duration;

use backend::Backend;
use delivery::{a_trace_context_reaches_every_node, delivers_exactly_once_in_order_across_nodes};
use emulation::emulation_reaches_the_named_node_only;
use herald_core::ClientInfo;
use history::{a_repeated_idempotency_key_publishes_once, publish_history_offsets_and_epoch};
use presence::{join_leave_control_and_nodes_reach_every_node, presence_counts_clients_and_users};

/// How long a contract waits for what another node should see.
const WAIT: Duration = Duration::from_secs(40);

/// Client info of `user` on connection `client`.
fn info(user: &str, client: &str) -> ClientInfo {
    ClientInfo {
        user: user.into(),
        client: client.into(),
        conn_info: None,
        chan_info: None,
    }
}

/// One test per engine for each contract function.
macro_rules! for_every_engine {
    ($($test:ident),* $(,)?) => {
        for_every_engine!(@backend memory: $($test),*);
        for_every_engine!(@backend redis: $($test),*);
        for_every_engine!(@backend cluster: $($test),*);
    };
    (@backend $backend:ident: $($test:ident),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::Backend::$backend().await).await;
                }
            )*
        }
    };
}

for_every_engine!(
    publish_history_offsets_and_epoch,
    presence_counts_clients_and_users,
    join_leave_control_and_nodes_reach_every_node,
    delivers_exactly_once_in_order_across_nodes,
    a_repeated_idempotency_key_publishes_once,
    a_trace_context_reaches_every_node,
    emulation_reaches_the_named_node_only,
);
