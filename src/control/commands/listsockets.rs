//! `listsockets`: the daemon's sockets, sorted by fd.
use super::util::one;
use super::Reply;
use crate::control::context::Ctx;
use serde_json::{json, Value};

/// No properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listsockets;

super::no_properties!(Listsockets);

pub async fn execute(ctx: Ctx, _: Listsockets) -> Reply {
    let mut socks = ctx.sockets.infos();
    socks.sort_by_key(|s| s.raw_fd);
    let list: Vec<Value> = socks
        .iter()
        .map(|s| match &s.path {
            Some(path) => json!({"fd": s.raw_fd, "name": s.name, "backlog": s.backlog, "path": path}),
            None => {
                json!({"fd": s.raw_fd, "name": s.name, "backlog": s.backlog, "host": s.host, "port": s.port})
            }
        })
        .collect();
    Ok(one("sockets", json!(list)))
}
