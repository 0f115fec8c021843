//! Unit tests of the hub: fan-out, sessions and drain bookkeeping.

use super::*;
use crate::frame::Frame;
use herald_core::engine::Handler;
use herald_core::publication::Publication;
use serde_json::value::RawValue;

#[test]
fn fans_out_one_shared_frame_to_every_subscriber() {
    let hub = Hub::new("n".into(), Metrics::new());
    let ch: Arc<str> = Arc::from("stock:A");
    let a = Outbox::new(4);
    let b = Outbox::new(4);
    assert!(hub.subscribe(&ch, 1, a.clone()));
    assert!(!hub.subscribe(&ch, 2, b.clone()));
    let p = Publication {
        offset: 1,
        data: RawValue::from_string("1".into()).unwrap(),
        info: None,
        tags: None,
        time: 0,
        trace: None,
    };
    hub.on_publication("stock:A", &p);
    let fa = a.take_frames().into_iter().next().unwrap();
    let fb = b.take_frames().into_iter().next().unwrap();
    let (Frame::Channel(fa), Frame::Channel(fb)) = (fa, fb) else {
        panic!("channel pushes expected");
    };
    assert!(Arc::ptr_eq(&fa, &fb), "one push shared by all");
    assert_eq!(fa.json.as_ptr(), fb.json.as_ptr(), "encoded once");
    assert!(!hub.unsubscribe("stock:A", 1));
    assert!(hub.unsubscribe("stock:A", 2));
    assert!(!hub.has_subscribers("stock:A"));
}

#[tokio::test]
async fn a_draining_hub_refuses_registration_and_reports_the_last_session() {
    let hub = Arc::new(Hub::new("n".into(), Metrics::new()));
    let user: Arc<str> = Arc::from("u");
    let (registered, pending) = (Outbox::new(4), Outbox::new(4));
    hub.open_session(1, &registered);
    assert_eq!(
        hub.add_session(&user, 1, Arc::from("c1"), registered.clone(), 0),
        Registration::Added
    );
    hub.open_session(2, &pending);

    let drained = hub.start_drain();
    assert_eq!(
        drained.len(),
        2,
        "registered and pending sessions are drained"
    );
    assert_eq!(
        hub.add_session(&user, 2, Arc::from("c2"), pending.clone(), 0),
        Registration::Draining
    );
    let late = Outbox::new(4);
    hub.open_session(3, &late);
    assert_eq!(
        late.closing(),
        Some(Disconnect::SHUTDOWN),
        "told to go at once"
    );
    hub.end_session(None, 3);
    hub.end_session(None, 2);

    let waiter = hub.clone();
    let waiting = tokio::spawn(async move { waiter.drained().await });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "one session is still open");
    hub.end_session(Some("u"), 1);
    tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
        .await
        .expect("woken by the last session's end")
        .unwrap();
    assert_eq!((hub.num_sessions(), hub.num_clients()), (0, 0));
}
