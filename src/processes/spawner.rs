//! A small pool of threads that start processes, so the actors never block
//! on a spawn and several processes can be started at once.
//!
//! [`spawn::spawn`](super::spawn::spawn) returns only once the child has
//! exec'd (or failed to): its calling thread sleeps while the vfork-style
//! child runs. Done on the actors' thread, starting 100 processes meant 100
//! spawn/exec round trips one after another. Here up to one
//! thread per CPU (at most 4) spawns in parallel, while the actors go on
//! handling messages. The threads start on first use and stay: they cost a
//! few pages of stack each, and a supervisor spawns for as long as it runs.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{oneshot, Semaphore};

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    tx: SyncSender<Job>,
}

static POOL: OnceLock<Option<Pool>> = OnceLock::new();

/// Jobs queued or running at once; `run` waits for room beyond that.
const QUEUE: usize = 4096;
/// One permit per job queued or running: a caller waits for one instead of
/// spawning on its own thread, which is the actors' thread.
static ROOM: Semaphore = Semaphore::const_new(QUEUE);
const STACK: usize = 256 * 1024;

fn pool() -> Option<&'static Pool> {
    POOL.get_or_init(|| {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..n {
            let rx = Arc::clone(&rx);
            let ok = std::thread::Builder::new()
                .name(format!("spawner-{i}"))
                .stack_size(STACK)
                .spawn(move || worker(&rx))
                .is_ok();
            if ok {
                started += 1;
            } else {
                tracing::warn!("cannot start spawner thread {i}");
            }
        }
        (started > 0).then_some(Pool { tx })
    })
    .as_ref()
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
            guard.recv()
        };
        match job {
            // A panic in a job must not take the thread (and the pool) with it.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

/// Runs `f` on a spawner thread and returns its result, or `None` if `f`
/// panicked there. Waits while thousands of jobs are queued. Runs `f` on the
/// calling thread only if no spawner thread could be started.
pub async fn run<T, F>(f: F) -> Option<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let Some(pool) = pool() else {
        return Some(f());
    };
    // Never closed; held until the job has run.
    let Ok(_room) = ROOM.acquire().await else {
        return Some(f());
    };
    let (tx, rx) = oneshot::channel();
    // The job owns `f` until it runs; if it cannot be queued we take it back.
    let slot = Arc::new(Mutex::new(Some(f)));
    let job_slot = Arc::clone(&slot);
    let job: Job = Box::new(move || {
        let f = job_slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(f) = f {
            let _ = tx.send(f());
        }
    });
    // With a permit there is room in the channel: this fails only if every
    // spawner thread is gone.
    if pool.tx.try_send(job).is_err() {
        let f = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        return f.map(|f| f());
    }
    rx.await.ok()
}
