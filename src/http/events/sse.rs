//! `GET /api/events`: Server-Sent Events. The stream opens with the current
//! state and the CPU/RSS histories, then carries `state`, `stats` and `log`
//! frames as they happen (several frames per write when they come fast).

use super::Frame;
use crate::http::bridge::{Join, Leave};
use crate::http::server::Shared;
use actix::Addr;
use actix_web::{web, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};
use serde_json::json;
use std::convert::Infallible;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Frames written at once at most, so one write stays small.
const BATCH: usize = 256;

/// Tells the bridge when the stream (the connection) is dropped.
struct Leaving(Addr<crate::http::bridge::Bridge>);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.do_send(Leave);
    }
}

fn missed(n: u64) -> Frame {
    Frame::new("lagged", &json!({ "missed": n }))
}

pub(crate) async fn events(s: web::Data<Shared>) -> HttpResponse {
    // Subscribe first: nothing that happens after the initial state is lost.
    let rx = s.hub.subscribe();
    let initial = match s.bridge.send(Join).await {
        Ok(f) => f,
        Err(e) => return HttpResponse::ServiceUnavailable().body(format!("daemon unavailable: {e}")),
    };
    let leaving = Leaving(s.bridge.clone());
    let head = stream::iter(
        initial
            .into_iter()
            .map(|f| Ok::<Bytes, Infallible>(f.bytes().clone())),
    );
    let live = stream::unfold((rx, leaving), |(mut rx, leaving)| async move {
        let first = match rx.recv().await {
            Ok(f) => f,
            Err(RecvError::Lagged(n)) => missed(n),
            Err(RecvError::Closed) => return None,
        };
        let mut buf = BytesMut::from(first.bytes().as_ref());
        for _ in 1..BATCH {
            match rx.try_recv() {
                Ok(f) => buf.extend_from_slice(f.bytes()),
                Err(TryRecvError::Lagged(n)) => buf.extend_from_slice(missed(n).bytes()),
                Err(_) => break,
            }
        }
        Some((Ok(buf.freeze()), (rx, leaving)))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(head.chain(live))
}
