//! Progress of a long wait on stderr: a spinner with the elapsed time on a terminal, and one
//! line per state change otherwise (CI logs, pipes).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SPINNER_FRAMES: [char; 4] = ['|', '/', '-', '\\'];
const SPINNER_INTERVAL: Duration = Duration::from_millis(120);

pub struct Progress {
    subject: String,
    started: Instant,
    state: Arc<Mutex<Option<String>>>,
    spinner: Option<Spinner>,
}

struct Spinner {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Progress {
    /// Starts reporting on `subject`, such as "instance i-0abc".
    pub fn start(subject: &str) -> Progress {
        let state = Arc::new(Mutex::new(None));
        let started = Instant::now();
        let spinner = std::io::stderr().is_terminal().then(|| Spinner::start(subject.to_owned(), started, Arc::clone(&state)));
        Progress { subject: subject.to_owned(), started, state, spinner }
    }

    /// Records the current state; without a terminal, a changed state prints one line.
    pub fn set_state(&mut self, state: &str) {
        let mut current = self.state.lock().expect("progress state lock");
        if current.as_deref() == Some(state) {
            return;
        }
        *current = Some(state.to_owned());
        if self.spinner.is_none() {
            eprintln!("[{:>4}s] {}: {state}", self.started.elapsed().as_secs(), self.subject);
        }
    }

    pub fn current_state(&self) -> Option<String> {
        self.state.lock().expect("progress state lock").clone()
    }

    /// Stops the spinner and prints the final line.
    pub fn finish(mut self, message: &str) {
        self.stop_spinner();
        eprintln!("[{:>4}s] {}: {message}", self.started.elapsed().as_secs(), self.subject);
    }

    fn stop_spinner(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.stop.store(true, Ordering::Relaxed);
            let _ = spinner.thread.join();
            eprint!("\r\x1b[2K");
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_spinner();
    }
}

impl Spinner {
    fn start(subject: String, started: Instant, state: Arc<Mutex<Option<String>>>) -> Spinner {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut frame = 0;
            while !stop_flag.load(Ordering::Relaxed) {
                let state = state.lock().map(|state| state.clone().unwrap_or_default()).unwrap_or_default();
                let mut stderr = std::io::stderr().lock();
                let _ = write!(
                    stderr,
                    "\r\x1b[2K{} [{:>4}s] {subject}: {state}",
                    SPINNER_FRAMES[frame % SPINNER_FRAMES.len()],
                    started.elapsed().as_secs()
                );
                let _ = stderr.flush();
                drop(stderr);
                frame += 1;
                std::thread::sleep(SPINNER_INTERVAL);
            }
        });
        Spinner { stop, thread }
    }
}
