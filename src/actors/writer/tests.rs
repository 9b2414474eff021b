//! The writer's pacing, abandoned requests and drain.

use super::*;
use crate::actors::Names;
use crate::domain::InteractionType::Click;
use crate::store::contract::{group, Fx};
use crate::store::embedded::EmbeddedStore;
use ractor::concurrency::JoinHandle;
use tempfile::TempDir;

/// A writer on a fresh embedded store (the directory lives as long as
/// the returned guard).
async fn start() -> (
    TempDir,
    Arc<dyn EventStore>,
    ActorRef<WriterMsg>,
    JoinHandle<()>,
) {
    start_with(&Names::new()).await
}

/// [`start`], the writer registered under `names` (and its intake).
async fn start_with(
    names: &Names,
) -> (
    TempDir,
    Arc<dyn EventStore>,
    ActorRef<WriterMsg>,
    JoinHandle<()>,
) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let (writer, handle) = spawn_for_test(&store, names).await.unwrap();
    (dir, store, writer, handle)
}

/// One event of `user` (its first), answered on `reply`.
fn first_event(
    fx: &Fx,
    user: &str,
    reply: RpcReplyPort<Result<WriteReply, WriteFailed>>,
) -> WriterMsg {
    WriterMsg::Write(first_event_pending(fx, user, reply))
}

/// Requests that come within the interval after a commit started wait
/// for its end (the clock is paused: it moves only when a timer is
/// due, so an answer before it would come at the commit's instant).
#[tokio::test(start_paused = true)]
async fn requests_within_the_interval_after_a_commit_wait_for_its_end() {
    let (_dir, store, writer, handle) = start().await;
    let fx = Fx::new();
    let (a, b, c) = (fx.name("a"), fx.name("b"), fx.name("c"));
    let (tx, rx) = ractor::concurrency::oneshot();
    writer
        .send_message(first_event(&fx, &a, tx.into()))
        .unwrap();
    rx.await.unwrap().unwrap();
    let committed = tokio::time::Instant::now();
    let mut replies = Vec::new();
    for user in [&b, &c] {
        let (tx, rx) = ractor::concurrency::oneshot();
        writer
            .send_message(first_event(&fx, user, tx.into()))
            .unwrap();
        replies.push(rx);
    }
    let mut firsts = Vec::new();
    for rx in replies {
        match rx.await.unwrap().unwrap().group {
            Some(GroupOutcome::Appended { first_pos, .. }) => firsts.push(first_pos),
            other => panic!("not appended: {other:?}"),
        }
        assert!(
            committed.elapsed() >= COMMIT_INTERVAL,
            "answered before the interval"
        );
    }
    assert_eq!(firsts.len(), 2);
    assert_eq!(store.last_seq(&c).await.unwrap(), 1);
    writer.stop(None);
    handle.await.unwrap();
}

#[tokio::test]
async fn requests_whose_caller_stopped_are_left_out() {
    let (_dir, store, writer, handle) = start().await;
    let fx = Fx::new();
    let (gone, kept) = (fx.name("gone"), fx.name("kept"));
    let (gone_tx, gone_rx) = ractor::concurrency::oneshot();
    drop(gone_rx); // its caller stopped
    let (kept_tx, kept_rx) = ractor::concurrency::oneshot();
    for (user, tx) in [(&gone, gone_tx), (&kept, kept_tx)] {
        writer
            .send_message(first_event(&fx, user, tx.into()))
            .unwrap();
    }
    let reply = kept_rx.await.unwrap().unwrap();
    assert!(matches!(reply.group, Some(GroupOutcome::Appended { .. })));
    assert_eq!(store.last_seq(&kept).await.unwrap(), 1);
    assert_eq!(store.last_seq(&gone).await.unwrap(), 0);
    writer.stop(None);
    handle.await.unwrap();
}

/// At shutdown the writer is drained: its mailbox closes with a
/// request still queued, so the `Flush` it would send itself is
/// refused. The request is committed and answered at once.
#[tokio::test]
async fn a_request_queued_when_the_drain_starts_is_committed() {
    let (_dir, store, writer, handle) = start().await;
    let fx = Fx::new();
    let user = fx.name("u");
    let (tx, rx) = ractor::concurrency::oneshot();
    writer
        .send_message(first_event(&fx, &user, tx.into()))
        .unwrap();
    writer
        .get_cell()
        .drain_and_wait(Some(std::time::Duration::from_secs(10)))
        .await
        .unwrap();
    handle.await.unwrap();
    let reply = rx.await.unwrap().unwrap();
    assert!(matches!(reply.group, Some(GroupOutcome::Appended { .. })));
    assert_eq!(store.last_seq(&user).await.unwrap(), 1);
}

/// One event of `user` (its first) as a request for the intake.
fn first_event_pending(
    fx: &Fx,
    user: &str,
    reply: RpcReplyPort<Result<WriteReply, WriteFailed>>,
) -> Pending {
    Pending::new(
        Some(group(user, 0, vec![fx.ev(user, 1, Click)])),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Requester::Waiting(reply),
    )
}

/// Pushes one event of `user` (its first) into the intake of `names`:
/// what the push said, and where its answer comes.
fn push_first_event(
    names: &Names,
    fx: &Fx,
    user: &str,
) -> (
    Option<Pushed>,
    ractor::concurrency::OneshotReceiver<Result<WriteReply, WriteFailed>>,
) {
    let (tx, rx) = ractor::concurrency::oneshot();
    let pushed = names
        .writer_intake()
        .push(first_event_pending(fx, user, tx.into()));
    (pushed, rx)
}

/// Requests in the intake are committed once a `Wake` arrives, in one
/// commit with what arrives meanwhile; only the first asks for a wake.
#[tokio::test]
async fn requests_left_in_the_intake_are_committed_after_a_wake() {
    let names = Names::new();
    let (_dir, store, writer, handle) = start_with(&names).await;
    let fx = Fx::new();
    let (a, b) = (fx.name("a"), fx.name("b"));
    let (first, rx_a) = push_first_event(&names, &fx, &a);
    assert_eq!(first, Some(Pushed::Wake));
    let (second, rx_b) = push_first_event(&names, &fx, &b);
    assert_eq!(second, Some(Pushed::Queued));
    writer.send_message(WriterMsg::Wake).unwrap();
    for rx in [rx_a, rx_b] {
        let reply = rx.await.unwrap().unwrap();
        assert!(matches!(reply.group, Some(GroupOutcome::Appended { .. })));
    }
    assert_eq!(store.last_seq(&b).await.unwrap(), 1);
    writer.stop(None);
    handle.await.unwrap();
}

/// A graceful stop commits what is in the intake; a writer that is gone
/// takes nothing more (the push drops the request).
#[tokio::test]
async fn a_stopping_writer_commits_its_intake_and_then_closes_it() {
    let names = Names::new();
    let (_dir, store, writer, handle) = start_with(&names).await;
    let fx = Fx::new();
    let (user, late) = (fx.name("u"), fx.name("late"));
    let (pushed, rx) = push_first_event(&names, &fx, &user);
    assert!(pushed.is_some());
    // No wake: the drain's `post_stop` finds it.
    writer
        .get_cell()
        .drain_and_wait(Some(std::time::Duration::from_secs(10)))
        .await
        .unwrap();
    handle.await.unwrap();
    let reply = rx.await.unwrap().unwrap();
    assert!(matches!(reply.group, Some(GroupOutcome::Appended { .. })));
    assert_eq!(store.last_seq(&user).await.unwrap(), 1);
    let (refused, rx) = push_first_event(&names, &fx, &late);
    assert!(refused.is_none(), "no writer holds the intake");
    assert!(rx.await.is_err(), "dropped: its caller hears at once");
}

/// A writer that is killed (no `post_stop`) drops what waited in its
/// intake: each requester hears at once (a handoff reports retryable),
/// nothing is committed, and a restarted writer opens the intake again.
#[tokio::test]
async fn a_killed_writer_drops_its_intake_and_the_next_one_reopens_it() {
    let names = Names::new();
    let (dir, store, writer, handle) = start_with(&names).await;
    let fx = Fx::new();
    let (user, next) = (fx.name("u"), fx.name("next"));
    let (pushed, rx) = push_first_event(&names, &fx, &user);
    assert!(pushed.is_some());
    writer.kill();
    handle.await.unwrap();
    assert!(rx.await.is_err(), "the reply port was dropped");
    assert_eq!(store.last_seq(&user).await.unwrap(), 0);
    let (writer, handle) = spawn_for_test(&store, &names).await.unwrap();
    let (pushed, rx) = push_first_event(&names, &fx, &next);
    assert_eq!(pushed, Some(Pushed::Wake));
    writer.send_message(WriterMsg::Wake).unwrap();
    assert!(rx.await.unwrap().is_ok());
    writer.stop(None);
    handle.await.unwrap();
    drop(dir);
}
