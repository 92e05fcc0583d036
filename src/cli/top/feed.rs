//! The channels `ringmaster top` reads: the control channel (a `status` and
//! the followed watcher's `stats` every period, the user's commands, the log
//! history and its follow lease) and the pubsub socket (`watcher.*` events,
//! which also bring the next refresh forward, and the followed watcher's
//! `logs.<name>.*` lines, as `ringmaster logs -f` reads them).

use super::model::{Command, Update, Verb};
use crate::control::client::{Client, ClientError, Subscriber};
use crate::control::commands::decr::ScaleBy;
use crate::control::commands::util::Target;
use crate::control::commands::{logs, stats, status, Request as Call};
use crate::control::follows::LEASE;
use anyhow::{anyhow, Context as _};
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::{Instant, MissedTickBehavior};

/// Lines of history shown when a watcher is selected.
const HISTORY_LINES: i64 = 200;
/// Events bring a refresh forward, but no closer than this to the last one:
/// a burst of events costs a few refreshes, not one each.
const MIN_REFRESH: Duration = Duration::from_millis(200);

/// What the UI asks of the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Follow this watcher's log and sample its processes.
    Follow(String),
    Send(Command),
}

pub(crate) struct Feed {
    client: Client,
    pubsub: String,
    events: Subscriber,
    period: Duration,
}

impl Feed {
    /// Connects to the daemon and subscribes to its events; fails (before any
    /// terminal is taken over) when the daemon does not answer.
    pub(crate) async fn connect(endpoint: &str, timeout: Duration, period: Duration) -> anyhow::Result<Feed> {
        let mut client = Client::connect(endpoint, timeout).await?;
        let globals = client
            .call("globaloptions", Map::new())
            .await
            .map_err(|e| anyhow!("{e} (is the daemon running? see --endpoint)"))?;
        let pubsub = globals
            .pointer("/options/pubsub_endpoint")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the daemon did not say where its pubsub endpoint is"))?
            .to_string();
        let events = Subscriber::connect(&pubsub, &["watcher.".to_string()])
            .await
            .with_context(|| format!("cannot subscribe to {pubsub}"))?;
        Ok(Feed {
            client,
            pubsub,
            events,
            period,
        })
    }

    /// Runs until the UI goes away (either channel closes).
    pub(crate) async fn run(
        mut self,
        mut requests: UnboundedReceiver<Request>,
        updates: UnboundedSender<Update>,
    ) {
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut renew = tokio::time::interval_at(Instant::now() + LEASE / 2, LEASE / 2);
        let mut followed: Option<(String, Subscriber)> = None;
        let mut last_refresh = Instant::now() - MIN_REFRESH;
        loop {
            let sent = tokio::select! {
                _ = tick.tick() => {
                    last_refresh = Instant::now();
                    self.refresh(followed.as_ref().map(|f| f.0.as_str()), &updates).await
                }
                ev = self.events.next() => match ev {
                    Ok((topic, payload)) => {
                        let ok = updates.send(Update::Event { topic, payload }).is_ok();
                        if ok && last_refresh.elapsed() >= MIN_REFRESH {
                            last_refresh = Instant::now();
                            self.refresh(followed.as_ref().map(|f| f.0.as_str()), &updates).await
                        } else {
                            ok
                        }
                    }
                    Err(e) => {
                        // Not a busy loop if the socket keeps failing.
                        tokio::time::sleep(self.period).await;
                        updates.send(Update::Problem(format!("events: {e:#}"))).is_ok()
                    }
                },
                line = next_line(&mut followed) => match line {
                    Ok((topic, payload)) => updates.send(Update::Log { topic, payload }).is_ok(),
                    Err(e) => {
                        tokio::time::sleep(self.period).await;
                        updates.send(Update::Problem(format!("log follow: {e:#}"))).is_ok()
                    }
                },
                _ = renew.tick() => match &followed {
                    Some((name, _)) => self.follow_lease(name, 0, &updates).await.is_some(),
                    None => true,
                },
                req = requests.recv() => match req {
                    None => false,
                    Some(Request::Follow(name)) => {
                        followed = self.follow(name, &updates).await;
                        !updates.is_closed()
                    }
                    Some(Request::Send(cmd)) => {
                        let result = self.send(&cmd).await;
                        last_refresh = Instant::now();
                        updates.send(Update::Reply { command: cmd, result }).is_ok()
                            && self.refresh(followed.as_ref().map(|f| f.0.as_str()), &updates).await
                    }
                },
            };
            if !sent {
                return;
            }
        }
    }

    /// Calls `command`; a failed call is reported as a `Problem` and None.
    async fn call(&mut self, req: Call, updates: &UnboundedSender<Update>) -> Option<Value> {
        match self.client.call(req.command(), req.props()).await {
            Ok(reply) if reply["status"] == "error" => {
                let reason = reply["reason"].as_str().unwrap_or("unknown error");
                let _ = updates.send(Update::Problem(format!("{}: {reason}", req.command())));
                None
            }
            Ok(reply) => Some(reply),
            Err(e) => {
                let _ = updates.send(Update::Problem(describe(req.command(), &e)));
                None
            }
        }
    }

    /// `status` of every watcher, then `stats` of the followed one; false
    /// once the UI is gone.
    async fn refresh(&mut self, followed: Option<&str>, updates: &UnboundedSender<Update>) -> bool {
        let st = Call::Status(status::Status {
            name: None,
            verbose: true,
        });
        if let Some(reply) = self.call(st, updates).await {
            if updates.send(Update::Status(reply)).is_err() {
                return false;
            }
        }
        if let Some(name) = followed {
            let req = Call::Stats(stats::Stats {
                name: Some(name.to_string()),
                process: None,
            });
            match self.client.call(req.command(), req.props()).await {
                // A watcher removed meanwhile answers an error; the next status drops it.
                Ok(reply) if reply["status"] == "error" => {}
                Ok(reply) => {
                    let u = Update::Stats {
                        watcher: name.to_string(),
                        reply,
                    };
                    if updates.send(u).is_err() {
                        return false;
                    }
                }
                Err(e) => {
                    let _ = updates.send(Update::Problem(describe(req.command(), &e)));
                }
            }
        }
        !updates.is_closed()
    }

    /// Takes (or renews) the follow lease on `name`, asking for `lines` of history.
    async fn follow_lease(
        &mut self,
        name: &str,
        lines: i64,
        updates: &UnboundedSender<Update>,
    ) -> Option<Value> {
        let req = Call::Logs(logs::Logs {
            name: name.to_string(),
            lines: Some(lines),
            follow: true,
            ..Default::default()
        });
        self.call(req, updates).await
    }

    /// Subscribes to `name`'s lines, then reads its history (subscribing
    /// first, so no line falls in between; the model drops the overlap).
    async fn follow(
        &mut self,
        name: String,
        updates: &UnboundedSender<Update>,
    ) -> Option<(String, Subscriber)> {
        let topic = format!("logs.{}.", name.to_lowercase().replace(' ', "_"));
        let sub = match Subscriber::connect(&self.pubsub, std::slice::from_ref(&topic)).await {
            Ok(s) => s,
            Err(e) => {
                let _ = updates.send(Update::Problem(format!("cannot follow {name}'s log: {e:#}")));
                return None;
            }
        };
        let reply = self.follow_lease(&name, HISTORY_LINES, updates).await?;
        let lines = reply["lines"].as_array().cloned().unwrap_or_default();
        let _ = updates.send(Update::LogHistory {
            watcher: name.clone(),
            lines,
        });
        Some((name, sub))
    }

    async fn send(&mut self, cmd: &Command) -> Result<(), String> {
        let target = || Target {
            name: Some(cmd.watcher.clone()),
            match_: Some("simple".into()),
            waiting: false,
        };
        let scale = || ScaleBy {
            name: cmd.watcher.clone(),
            nb: 1,
            waiting: false,
        };
        let req = match cmd.verb {
            Verb::Start => Call::Start(target()),
            Verb::Stop => Call::Stop(target()),
            Verb::Restart => Call::Restart(target()),
            Verb::Incr => Call::Incr(scale()),
            Verb::Decr => Call::Decr(scale()),
        };
        match self.client.call(req.command(), req.props()).await {
            Ok(reply) if reply["status"] == "error" => {
                Err(reply["reason"].as_str().unwrap_or("unknown error").to_string())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(describe(req.command(), &e)),
        }
    }
}

fn describe(command: &str, e: &ClientError) -> String {
    match e {
        ClientError::Timeout(t) => format!("{command}: no reply within {t:?} (is the daemon running?)"),
        ClientError::Transport(t) => format!("{command}: {t}"),
    }
}

/// The next line of the followed log; pending forever when nothing is followed.
async fn next_line(followed: &mut Option<(String, Subscriber)>) -> anyhow::Result<(String, Value)> {
    match followed {
        Some((_, sub)) => sub.next().await,
        None => std::future::pending().await,
    }
}
