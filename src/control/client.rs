//! Control-channel and event clients, used by the `ringmaster` CLI and the
//! tests. They behave like Circus's own client: a DEALER with a random
//! 32-hex identity sending one JSON frame per call, and a SUB socket with
//! topic-prefix subscriptions.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::time::Instant;
use zeromq::util::PeerIdentity;
use zeromq::{DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend, SubSocket, ZmqMessage};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No reply with our id arrived in time (circusctl: "Timed out.").
    #[error("timed out after {0:?} waiting for a reply")]
    Timeout(Duration),
    /// The socket failed (daemon gone, connection reset, ...).
    #[error("control channel error: {0}")]
    Transport(String),
}

/// 32 random lowercase hex digits, like `uuid.uuid4().hex`.
pub fn random_hex_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// A connected control client.
pub struct Client {
    socket: DealerSocket,
    timeout: Duration,
    endpoint: String,
}

impl Client {
    /// Connects a DEALER (identity: random 32-hex) to `endpoint`. `timeout`
    /// bounds the connection and, later, each call. An ipc endpoint whose
    /// socket file does not exist fails at once.
    pub async fn connect(endpoint: &str, timeout: Duration) -> anyhow::Result<Client> {
        if let Some(path) = endpoint.strip_prefix("ipc://") {
            if !Path::new(path).exists() {
                bail!("no control socket at {path} (is the daemon running?)");
            }
        }
        let identity: PeerIdentity = random_hex_id()
            .parse()
            .map_err(|err| anyhow!("bad client identity: {err}"))?;
        let mut options = SocketOptions::default();
        options.peer_identity(identity).connect_timeout(timeout);
        let mut socket = DealerSocket::with_options(options);
        socket
            .connect(endpoint)
            .await
            .map_err(|err| anyhow!("cannot connect to {endpoint}: {err}"))?;
        Ok(Client {
            socket,
            timeout,
            endpoint: endpoint.to_owned(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends `{"command","properties","id"}` and returns the whole reply
    /// (`status` may be "error": that is a reply, not a `ClientError`).
    /// Replies carrying another id (late answers to earlier timed-out calls)
    /// are skipped.
    pub async fn call(
        &mut self,
        command: &str,
        properties: Map<String, Value>,
    ) -> Result<Value, ClientError> {
        let id = random_hex_id();
        let body = encode_request(command, properties, &id, false)?;
        let deadline = Instant::now() + self.timeout;
        self.send_body(body, deadline).await?;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.recv())
                .await
                .map_err(|_| ClientError::Timeout(self.timeout))?
                .map_err(|err| ClientError::Transport(err.to_string()))?;
            let Some(frame) = message.into_vec().pop() else {
                continue;
            };
            match serde_json::from_slice::<Value>(&frame) {
                Ok(reply) if reply.get("id").and_then(Value::as_str) == Some(id.as_str()) => {
                    return Ok(reply)
                }
                Ok(_) => tracing::debug!("skipping a reply to another request"),
                Err(err) => tracing::debug!(error = %err, "skipping a reply that is not JSON"),
            }
        }
    }

    /// Sends a `msg_type: cast` request: the daemon runs it and never replies.
    pub async fn cast(&mut self, command: &str, properties: Map<String, Value>) -> Result<(), ClientError> {
        let body = encode_request(command, properties, &random_hex_id(), true)?;
        self.send_body(body, Instant::now() + self.timeout).await
    }

    /// Sends one raw frame (tests of malformed input).
    pub async fn send_raw(&mut self, body: Vec<u8>) -> Result<(), ClientError> {
        self.send_body(body, Instant::now() + self.timeout).await
    }

    /// Receives one raw reply frame, whatever its id.
    pub async fn recv_raw(&mut self) -> Result<Vec<u8>, ClientError> {
        let message = tokio::time::timeout(self.timeout, self.socket.recv())
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
            .map_err(|err| ClientError::Transport(err.to_string()))?;
        Ok(message.into_vec().pop().map(|b| b.to_vec()).unwrap_or_default())
    }

    async fn send_body(&mut self, body: Vec<u8>, deadline: Instant) -> Result<(), ClientError> {
        tokio::time::timeout_at(deadline, self.socket.send(ZmqMessage::from(body)))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
            .map_err(|err| ClientError::Transport(err.to_string()))
    }
}

fn encode_request(
    command: &str,
    properties: Map<String, Value>,
    id: &str,
    cast: bool,
) -> Result<Vec<u8>, ClientError> {
    let mut msg = Map::new();
    msg.insert("command".into(), Value::String(command.to_owned()));
    msg.insert("properties".into(), Value::Object(properties));
    msg.insert("id".into(), Value::String(id.to_owned()));
    if cast {
        msg.insert("msg_type".into(), Value::String("cast".into()));
    }
    serde_json::to_vec(&Value::Object(msg))
        .map_err(|err| ClientError::Transport(format!("cannot encode the request: {err}")))
}

/// An event subscriber (SUB socket).
pub struct Subscriber {
    socket: SubSocket,
}

impl Subscriber {
    /// Connects to a PUB endpoint and subscribes to each topic prefix; an
    /// empty list subscribes to everything. Connecting is bounded by 10 s.
    pub async fn connect(endpoint: &str, topics: &[String]) -> anyhow::Result<Subscriber> {
        let mut options = SocketOptions::default();
        options.connect_timeout(Duration::from_secs(10));
        let mut socket = SubSocket::with_options(options);
        socket
            .connect(endpoint)
            .await
            .map_err(|err| anyhow!("cannot connect to {endpoint}: {err}"))?;
        if topics.is_empty() {
            socket
                .subscribe("")
                .await
                .map_err(|err| anyhow!("cannot subscribe: {err}"))?;
        }
        for topic in topics {
            socket
                .subscribe(topic)
                .await
                .map_err(|err| anyhow!("cannot subscribe to {topic:?}: {err}"))?;
        }
        Ok(Subscriber { socket })
    }

    /// The next `[topic, json]` event. Errors on a socket failure or on a
    /// message that is not two frames with a JSON payload.
    pub async fn next(&mut self) -> anyhow::Result<(String, Value)> {
        let message = self
            .socket
            .recv()
            .await
            .map_err(|err| anyhow!("event socket failed: {err}"))?;
        let frames: Vec<Bytes> = message.into_vec();
        let [topic, payload] = <[Bytes; 2]>::try_from(frames)
            .map_err(|f| anyhow!("expected a [topic, json] event, got {} frames", f.len()))?;
        let topic = String::from_utf8_lossy(&topic).into_owned();
        let payload: Value = serde_json::from_slice(&payload)
            .with_context(|| format!("event {topic} has a payload that is not JSON"))?;
        Ok((topic, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex() {
        let a = random_hex_id();
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, random_hex_id());
    }

    #[test]
    fn request_encoding() {
        let mut props = Map::new();
        props.insert("name".into(), Value::String("a".into()));
        let body = encode_request("status", props, "abc", false).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"command":"status","properties":{"name":"a"},"id":"abc"}"#
        );
        let body = encode_request("quit", Map::new(), "x", true).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["msg_type"], "cast");
    }
}
