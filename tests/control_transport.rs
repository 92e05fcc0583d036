//! Control transport, publisher and client, end to end over loopback tcp and
//! ipc, on a current-thread runtime + LocalSet (as under actix).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use ringmaster::control::client::{Client, ClientError, Subscriber};
use ringmaster::control::protocol::{prop_str, CommandError, Request};
use ringmaster::control::pubsub::{watcher_topic, Publisher};
use ringmaster::control::transport::{ControlServer, Dispatcher};
use serde_json::{json, Map, Value};
use zeromq::{DealerSocket, ReqSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `f` on a current-thread runtime inside a LocalSet, bounded in time.
fn run_local<F: Future<Output = ()>>(f: F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        tokio::time::timeout(TEST_TIMEOUT, f)
            .await
            .expect("test timed out")
    });
}

fn props(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

/// `list`, `status`, `slow`, `echo`, `count` (for casts), `panic`, `quit`.
#[derive(Clone, Default)]
struct Toy {
    count: Rc<Cell<u64>>,
    quit: Rc<RefCell<Option<tokio::sync::oneshot::Sender<()>>>>,
}

impl Dispatcher for Toy {
    fn dispatch(&self, req: Request) -> LocalBoxFuture<'static, Result<Map<String, Value>, CommandError>> {
        let this = self.clone();
        async move {
            match req.command.as_str() {
                "list" => Ok(props(json!({"watchers": ["a", "b"]}))),
                "status" => match prop_str(&req.properties, "name")? {
                    Some(n) if n == "a" || n == "b" => Ok(props(json!({"status": "active"}))),
                    Some(n) => Err(CommandError::message(format!("program {n} not found"))),
                    None => Ok(props(json!({"statuses": {"a": "active", "b": "active"}}))),
                },
                "slow" => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok(props(json!({"slow": true})))
                }
                "echo" => Ok(req.properties),
                "count" => {
                    this.count.set(this.count.get() + 1);
                    Ok(props(json!({"count": this.count.get()})))
                }
                "panic" => panic!("toy panic"),
                "quit" => {
                    if let Some(tx) = this.quit.borrow_mut().take() {
                        let _ = tx.send(());
                    }
                    Ok(Map::new())
                }
                other => Err(CommandError::unknown_command(other)),
            }
        }
        .boxed_local()
    }
}

async fn call(client: &mut Client, command: &str, p: Value) -> Value {
    client.call(command, props(p)).await.unwrap()
}

fn tmp_ipc(dir: &tempfile::TempDir, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.path().join(name);
    let endpoint = format!("ipc://{}", path.display());
    (path, endpoint)
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn tcp_replies_ids_and_errors() {
    run_local(async {
        let server = ControlServer::bind("tcp://127.0.0.1:0").await.unwrap();
        let endpoint = server.endpoints()[0].clone();
        assert!(endpoint.starts_with("tcp://127.0.0.1:"), "{endpoint}");
        assert!(!endpoint.ends_with(":0"));
        let handle = server.run(Toy::default());

        let mut client = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();
        let reply = call(&mut client, "list", json!({})).await;
        assert_eq!(reply["status"], "ok");
        assert_eq!(reply["watchers"], json!(["a", "b"]));
        assert!(reply["time"].as_f64().unwrap() > 1.6e9);
        let id = reply["id"].as_str().unwrap();
        assert_eq!(id.len(), 32);

        // Key order as Circus: status, time, payload, id.
        let keys: Vec<&String> = reply.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["status", "time", "watchers", "id"]);

        let reply = call(&mut client, "STATUS", json!({"name": "a"})).await;
        assert_eq!(reply["status"], "active");

        let reply = call(&mut client, "status", json!({"name": "zz"})).await;
        assert_eq!(reply["status"], "error");
        assert_eq!(reply["errno"], 3);
        assert_eq!(reply["reason"], "program zz not found");
        assert_eq!(reply["tb"], Value::Null);

        let reply = call(&mut client, "nope", json!({})).await;
        assert_eq!(reply["errno"], 2);
        assert_eq!(reply["reason"], "unknown command: 'nope'");

        // A panicking command becomes an errno 5 reply; the server survives.
        let reply = call(&mut client, "panic", json!({})).await;
        assert_eq!(reply["errno"], 5);
        assert!(reply["reason"].as_str().unwrap().contains("toy panic"));
        assert_eq!(call(&mut client, "list", json!({})).await["status"], "ok");

        // Round trip of a fresh client, as `ringmaster status` does it.
        let mut samples = Vec::new();
        for _ in 0..20 {
            let t0 = Instant::now();
            let mut c = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();
            let r = call(&mut c, "status", json!({})).await;
            samples.push(t0.elapsed());
            assert_eq!(r["statuses"]["a"], "active");
        }
        samples.sort();
        let median = samples[samples.len() / 2];
        eprintln!(
            "tcp connect+call: median {:?}, max {:?}",
            median,
            samples[samples.len() - 1]
        );
        assert!(median < Duration::from_millis(200), "median {median:?}");

        handle.shutdown().await;
    });
}

#[test]
fn ipc_files_modes_and_cleanup() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("run");
        let path = sub.join("x.sock");
        let endpoint = format!("ipc://{}", path.display());
        let server = ControlServer::bind(&endpoint).await.unwrap();
        assert_eq!(server.endpoints(), std::slice::from_ref(&endpoint));
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&sub), 0o700);
        let handle = server.run(Toy::default());

        let mut client = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();
        assert_eq!(
            call(&mut client, "list", json!({})).await["watchers"],
            json!(["a", "b"])
        );
        assert_eq!(
            call(&mut client, "status", json!({"name": "b"})).await["status"],
            "active"
        );

        let mut samples = Vec::new();
        for _ in 0..20 {
            let t0 = Instant::now();
            let mut c = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();
            call(&mut c, "status", json!({})).await;
            samples.push(t0.elapsed());
        }
        samples.sort();
        eprintln!(
            "ipc connect+call: median {:?}, max {:?}",
            samples[samples.len() / 2],
            samples[samples.len() - 1]
        );

        // A second server on the same live socket is refused, not hijacked.
        let err = ControlServer::bind(&endpoint).await.err().unwrap();
        assert!(format!("{err:#}").contains("already listening"), "{err:#}");
        assert_eq!(call(&mut client, "list", json!({})).await["status"], "ok");

        handle.shutdown().await;
        assert!(!path.exists(), "socket file left behind");
        // With the file gone, a client fails at once instead of waiting.
        let t0 = Instant::now();
        assert!(Client::connect(&endpoint, CALL_TIMEOUT).await.is_err());
        assert!(t0.elapsed() < Duration::from_secs(1));
    });
}

#[test]
fn stale_ipc_socket_is_replaced_and_other_files_are_kept() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let (path, endpoint) = tmp_ipc(&dir, "stale.sock");
        // A socket file nobody listens on, as a crashed daemon leaves it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let server = ControlServer::bind(&endpoint).await.unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let handle = server.run(Toy::default());
        let mut client = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();
        assert_eq!(call(&mut client, "list", json!({})).await["status"], "ok");
        handle.shutdown().await;
        assert!(!path.exists());

        // A regular file at the socket path is not deleted.
        let (file, endpoint) = tmp_ipc(&dir, "not-a-socket");
        std::fs::write(&file, b"precious").unwrap();
        let err = ControlServer::bind(&endpoint).await.err().unwrap();
        assert!(format!("{err:#}").contains("not a socket"), "{err:#}");
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    });
}

#[test]
fn several_endpoints_one_server() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let (path, ipc) = tmp_ipc(&dir, "multi.sock");
        let server = ControlServer::bind_all(&["tcp://127.0.0.1:0".to_string(), ipc.clone()])
            .await
            .unwrap();
        let endpoints = server.endpoints().to_vec();
        let handle = server.run(Toy::default());
        for endpoint in &endpoints {
            let mut c = Client::connect(endpoint, CALL_TIMEOUT).await.unwrap();
            assert_eq!(call(&mut c, "list", json!({})).await["status"], "ok");
        }
        handle.shutdown().await;
        assert!(!path.exists());
    });
}

#[test]
fn req_style_clients_are_answered() {
    run_local(async {
        let server = ControlServer::bind("tcp://127.0.0.1:0").await.unwrap();
        let endpoint = server.endpoints()[0].clone();
        let handle = server.run(Toy::default());

        let mut req = ReqSocket::new();
        req.connect(&endpoint).await.unwrap();
        for i in 0..3 {
            let body = json!({"command": "list", "properties": {}, "id": i}).to_string();
            req.send(ZmqMessage::from(body)).await.unwrap();
            let reply = tokio::time::timeout(CALL_TIMEOUT, req.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(reply.len(), 1);
            let v: Value = serde_json::from_slice(reply.get(0).unwrap()).unwrap();
            assert_eq!(v["id"], i);
            assert_eq!(v["watchers"], json!(["a", "b"]));
        }
        handle.shutdown().await;
    });
}

#[test]
fn malformed_messages_get_error_replies_and_the_server_keeps_going() {
    run_local(async {
        let server = ControlServer::bind("tcp://127.0.0.1:0").await.unwrap();
        let endpoint = server.endpoints()[0].clone();
        let handle = server.run(Toy::default());
        let mut client = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();

        let big = format!(
            r#"{{"command":"list","id":"big","pad":"{}"}}"#,
            "x".repeat(2 * 1024 * 1024)
        );
        let cases: Vec<(Vec<u8>, u64, Value)> = vec![
            (b"this is not json".to_vec(), 1, Value::Null),
            (b"[1,2]".to_vec(), 1, Value::Null),
            (b"".to_vec(), 1, Value::Null),
            (b"   ".to_vec(), 1, Value::Null),
            (b"\xff\xfe".to_vec(), 1, Value::Null),
            (b"{}".to_vec(), 3, Value::Null),
            (
                br#"{"command":"list","properties":[1],"id":"p"}"#.to_vec(),
                3,
                json!("p"),
            ),
            (br#"{"command":7,"id":8}"#.to_vec(), 3, json!(8)),
            (big.into_bytes(), 3, Value::Null),
        ];
        for (body, errno, id) in cases {
            let shown = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
            client.send_raw(body).await.unwrap();
            let reply: Value = serde_json::from_slice(&client.recv_raw().await.unwrap()).unwrap();
            assert_eq!(reply["status"], "error", "{shown}");
            assert_eq!(reply["errno"], errno, "{shown}: {reply}");
            assert_eq!(reply["id"], id, "{shown}");
            // The server still answers normal requests right away.
            assert_eq!(call(&mut client, "list", json!({})).await["status"], "ok");
        }
        let reply = {
            client.send_raw(b"{}".to_vec()).await.unwrap();
            serde_json::from_slice::<Value>(&client.recv_raw().await.unwrap()).unwrap()
        };
        assert_eq!(reply["reason"], "message invalid 'command' is missing");

        // Unexpected framing from a raw DEALER: [a, b, json] (not a REQ
        // envelope). The error reply keeps the envelope.
        let mut dealer = DealerSocket::new();
        dealer.connect(&endpoint).await.unwrap();
        let mut msg = ZmqMessage::from("x");
        msg.push_back("y".into());
        msg.push_back(r#"{"command":"list","id":"f"}"#.into());
        dealer.send(msg).await.unwrap();
        let reply = tokio::time::timeout(CALL_TIMEOUT, dealer.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply.len(), 3);
        assert_eq!(reply.get(0).unwrap().as_ref(), b"x");
        let v: Value = serde_json::from_slice(reply.get(2).unwrap()).unwrap();
        assert_eq!(v["errno"], 3);
        assert_eq!(v["id"], "f");

        assert_eq!(call(&mut client, "list", json!({})).await["status"], "ok");
        handle.shutdown().await;
    });
}

#[test]
fn casts_run_without_reply() {
    run_local(async {
        let toy = Toy::default();
        let server = ControlServer::bind("tcp://127.0.0.1:0").await.unwrap();
        let endpoint = server.endpoints()[0].clone();
        let handle = server.run(toy.clone());
        let mut client = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();
        client.cast("count", Map::new()).await.unwrap();
        client.cast("nope", Map::new()).await.unwrap(); // errors are silent too
        client
            .send_raw(br#"{"command":"count","id":"after"}"#.to_vec())
            .await
            .unwrap();
        // The next frame is the answer to "after": the casts sent nothing.
        let reply: Value = serde_json::from_slice(&client.recv_raw().await.unwrap()).unwrap();
        assert_eq!(reply["id"], "after");
        assert_eq!(reply["count"], 2);
        assert_eq!(toy.count.get(), 2);
        handle.shutdown().await;
    });
}

#[test]
fn slow_command_does_not_delay_others_and_vanished_clients_are_harmless() {
    run_local(async {
        let server = ControlServer::bind("tcp://127.0.0.1:0").await.unwrap();
        let endpoint = server.endpoints()[0].clone();
        let handle = server.run(Toy::default());

        // A client that disconnects before its (slow) reply.
        let mut gone = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();
        gone.send_raw(br#"{"command":"slow","id":"gone"}"#.to_vec())
            .await
            .unwrap();
        drop(gone);

        let mut slow_client = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();
        let mut fast_client = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();
        let t0 = Instant::now();
        let slow = async {
            let r = call(&mut slow_client, "slow", json!({})).await;
            (r, t0.elapsed())
        };
        let fast = async {
            // Let the slow request reach the server first.
            tokio::task::yield_now().await;
            let r = call(&mut fast_client, "list", json!({})).await;
            (r, t0.elapsed())
        };
        let ((slow_reply, slow_t), (fast_reply, fast_t)) = futures::join!(slow, fast);
        assert_eq!(slow_reply["slow"], true);
        assert_eq!(fast_reply["status"], "ok");
        assert!(slow_t >= Duration::from_millis(500));
        assert!(fast_t < Duration::from_millis(400), "list took {fast_t:?}");
        eprintln!("slow {slow_t:?}, concurrent list {fast_t:?}");

        // The vanished client's reply (due by now) broke nothing.
        assert_eq!(call(&mut fast_client, "list", json!({})).await["status"], "ok");

        // A call that outlives the client timeout is a Timeout, and its late
        // reply is skipped by the next call on the same socket.
        fast_client.set_timeout(Duration::from_millis(100));
        let err = fast_client.call("slow", Map::new()).await.unwrap_err();
        assert!(matches!(err, ClientError::Timeout(_)), "{err}");
        fast_client.set_timeout(CALL_TIMEOUT);
        let r = call(&mut fast_client, "slow", json!({})).await;
        assert_eq!(r["slow"], true);
        handle.shutdown().await;
    });
}

#[test]
fn twenty_clients_times_a_hundred_requests() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let (_, ipc) = tmp_ipc(&dir, "load.sock");
        let server = ControlServer::bind_all(&["tcp://127.0.0.1:0".to_string(), ipc])
            .await
            .unwrap();
        let endpoints = server.endpoints().to_vec();
        let handle = server.run(Toy::default());
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..20 {
            let endpoint = endpoints[c % 2].clone();
            tasks.push(tokio::task::spawn_local(async move {
                let mut client = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();
                for i in 0..100 {
                    let r = call(&mut client, "echo", json!({"c": c, "i": i})).await;
                    assert_eq!(r["c"], c);
                    assert_eq!(r["i"], i);
                }
                100
            }));
        }
        let mut answered = 0;
        for t in tasks {
            answered += t.await.unwrap();
        }
        assert_eq!(answered, 2000);
        eprintln!("2000 requests from 20 clients in {:?}", t0.elapsed());
        handle.shutdown().await;
    });
}

#[test]
fn quit_reply_is_flushed_before_shutdown() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let (path, endpoint) = tmp_ipc(&dir, "quit.sock");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let toy = Toy::default();
        *toy.quit.borrow_mut() = Some(tx);
        let handle = ControlServer::bind(&endpoint).await.unwrap().run(toy);
        let mut client = Client::connect(&endpoint, CALL_TIMEOUT).await.unwrap();
        let quitter = tokio::task::spawn_local(async move {
            rx.await.unwrap();
            handle.shutdown().await;
        });
        let reply = call(&mut client, "quit", json!({})).await;
        assert_eq!(reply["status"], "ok");
        quitter.await.unwrap();
        assert!(!path.exists());
        client.set_timeout(Duration::from_millis(200));
        assert!(client.call("list", Map::new()).await.is_err());
    });
}

#[test]
fn publisher_to_subscriber_with_prefix_filtering() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let (path, ipc) = tmp_ipc(&dir, "pubsub.sock");
        let publisher = Publisher::bind_all(&["tcp://127.0.0.1:0".to_string(), ipc.clone()])
            .await
            .unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let tcp = publisher.endpoints()[0].clone();

        for endpoint in [tcp, ipc] {
            let mut sub = Subscriber::connect(&endpoint, &["watcher.a.".to_string()])
                .await
                .unwrap();
            // PUB/SUB has a "slow joiner" window: publish until the
            // subscription is in place, bounded by the test timeout.
            let publisher2 = publisher.clone();
            let pumping = tokio::task::spawn_local(async move {
                let mut n = 0u64;
                loop {
                    n += 1;
                    publisher2.publish(watcher_topic("b", "spawn"), &json!({"n": n}));
                    publisher2.publish_watcher_event("A", "spawn", &json!({"process_pid": 42, "n": n}));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            for _ in 0..3 {
                let (topic, payload) = sub.next().await.unwrap();
                assert_eq!(topic, "watcher.a.spawn");
                assert_eq!(payload["process_pid"], 42);
            }
            pumping.abort();
        }

        let everything = Subscriber::connect(&publisher.endpoints()[0], &[]).await;
        assert!(everything.is_ok());
        assert_eq!(publisher.dropped(), 0);
        publisher.shutdown().await;
        assert!(!path.exists());
        publisher.publish("watcher.a.x", &json!({})); // after shutdown: dropped, no panic
        assert_eq!(publisher.dropped(), 1);
    });
}

#[test]
fn publish_never_blocks_and_counts_drops() {
    run_local(async {
        let publisher = Publisher::bind("tcp://127.0.0.1:0").await.unwrap();
        // Without yielding, the socket task cannot drain: the queue fills.
        let n = ringmaster::control::pubsub::PUBLISH_QUEUE_CAPACITY as u64 + 100;
        let t0 = Instant::now();
        for i in 0..n {
            publisher.publish("watcher.x.spawn", &json!({"i": i}));
        }
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert_eq!(publisher.dropped(), 100);
        publisher.shutdown().await;
    });
}
