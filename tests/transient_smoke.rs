use futures_lite::future::{block_on, poll_once};
use value_watcher::ValueWatcher;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Conn {
    Disconnected,
    Connecting,
    Connected,
    Closing,
    Closed,
}

#[test]
fn transient_and_broadcast() {
    let w = ValueWatcher::new(Conn::Disconnected);
    let mut closing = Box::pin(w.wait_for(Conn::Closing));
    assert!(block_on(poll_once(&mut closing)).is_none());
    let mut many: Vec<_> = (0..100)
        .map(|_| Box::pin(w.wait_for(Conn::Connected)))
        .collect();
    for f in &mut many {
        assert!(block_on(poll_once(f)).is_none());
    }
    for s in [
        Conn::Connecting,
        Conn::Connected,
        Conn::Closing,
        Conn::Closed,
    ] {
        w.set(s);
    }
    assert_eq!(block_on(closing), Conn::Closing);
    for f in many {
        assert_eq!(block_on(f), Conn::Connected);
    }
    assert_eq!(w.version(), 4);
}
