//! A small client of the Chrome DevTools protocol for the console's browser tests: headless
//! Chromium started with `--remote-debugging-pipe`, which reads the protocol's JSON messages
//! from its file descriptor 3 and writes them to 4, each ended by a NUL byte. A shell joins
//! those descriptors to two named pipes this side opens, so no unsafe code and no websocket are
//! needed. Calls are synchronous: a test drives one page, step after step.

use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Longest one protocol call may take before the test gives up on the browser.
const CALL_DEADLINE_MS: u64 = 30_000;

/// Longest a test waits for the page to reach a state it expects.
pub const PAGE_DEADLINE_MS: u64 = 30_000;

const POLL_INTERVAL_MS: u64 = 50;

/// How long a closing browser may take before it is killed.
const CLOSE_DEADLINE_MS: u64 = 5_000;

/// The browser binary: `CHROMIUM` if set, else Debian's `chromium` on the PATH.
fn chromium() -> String {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return path;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|candidate| candidate.is_file())
    });
    found.map(|p| p.display().to_string()).unwrap_or_else(|| {
        panic!(
            "the console's browser tests need headless Chromium: install Debian's `chromium` \
             package (`.ci/run` does when it is missing) or set CHROMIUM to the binary"
        )
    })
}

pub struct Browser {
    child: Child,
    to_browser: File,
    from_browser: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Uncaught exceptions, console errors and browser log errors (a refused Content Security
    /// Policy shows up here), as text.
    pub errors: Vec<String>,
    dir: PathBuf,
}

impl Browser {
    /// Start the browser in `dir` (its profile and the pipes live there) and open one blank
    /// page of 1280 × 800.
    pub fn launch(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("the browser's directory can be made");
        let to_path = dir.join("to-browser");
        let from_path = dir.join("from-browser");
        for pipe in [&to_path, &from_path] {
            let _ = std::fs::remove_file(pipe);
            let status = Command::new("mkfifo")
                .arg(pipe)
                .status()
                .expect("mkfifo runs");
            assert!(status.success(), "mkfifo {} failed", pipe.display());
        }
        let profile = dir.join("profile");
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<"$CDP_TO_BROWSER" 4>"$CDP_FROM_BROWSER""#)
            .arg(chromium())
            .args([
                "--headless",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--mute-audio",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .env("CDP_TO_BROWSER", &to_path)
            .env("CDP_FROM_BROWSER", &from_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                File::create(dir.join("chromium.log")).expect("the browser's log file"),
            ))
            .spawn()
            .expect("the browser starts");
        // The shell opens the pipe to the browser first, then the one back: open them in the
        // same order, or both sides wait forever.
        let to_browser = OpenOptions::new()
            .write(true)
            .open(&to_path)
            .expect("the pipe to the browser opens");
        let from_browser = File::open(&from_path).expect("the pipe from the browser opens");
        let (sender, receiver) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_browser);
            let mut message = Vec::new();
            while matches!(reader.read_until(0, &mut message), Ok(n) if n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                    if sender.send(value).is_err() {
                        return;
                    }
                }
                message.clear();
            }
        });
        let mut browser = Self {
            child,
            to_browser,
            from_browser: receiver,
            next_id: 0,
            session: String::new(),
            errors: Vec::new(),
            dir: dir.to_owned(),
        };
        let target = browser.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser.viewport(1280, 800, false);
        browser
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("a message serialises");
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .and_then(|()| self.to_browser.flush())
            .unwrap_or_else(|e| panic!("{method}: the browser's pipe is closed: {e}"));
        let deadline = Instant::now() + Duration::from_millis(CALL_DEADLINE_MS);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let message = match self.from_browser.recv_timeout(remaining) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{method}: no answer from the browser in {CALL_DEADLINE_MS} ms")
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{method}: the browser went away; see {}",
                    self.dir.join("chromium.log").display()
                ),
            };
            if message["id"].as_u64() == Some(id) {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            self.note_event(&message);
        }
    }

    fn note_event(&mut self, message: &Value) {
        let params = &message["params"];
        match message["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                self.errors
                    .push(format!("exception: {}", params["exceptionDetails"]));
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                self.errors
                    .push(format!("console error: {}", params["args"]));
            }
            // A refused request (the 401 before sign-in, a 403) is an answer the page handles,
            // which the browser logs from its network source.
            Some("Log.entryAdded")
                if params["entry"]["level"] == "error"
                    && params["entry"]["source"] != "network" =>
            {
                self.errors.push(format!(
                    "browser log: {}",
                    params["entry"]["text"].as_str().unwrap_or_default()
                ));
            }
            _ => {}
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    /// A call on the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    pub fn navigate(&mut self, url: &str) {
        let answer = self.call("Page.navigate", json!({"url": url}));
        assert!(
            answer.get("errorText").is_none(),
            "navigating to {url}: {answer}"
        );
    }

    /// The value of a JavaScript expression (awaited if it is a promise).
    pub fn eval(&mut self, expression: &str) -> Value {
        let answer = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(details) = answer.get("exceptionDetails") {
            panic!("evaluating {expression}: {details}");
        }
        answer["result"]["value"].clone()
    }

    /// Wait until `expression` is truthy on the page; its value.
    pub fn wait_for(&mut self, expression: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_millis(PAGE_DEADLINE_MS);
        loop {
            // Until the page has loaded, the elements asked about may not exist yet.
            let value = self.eval(&format!(
                "(() => {{ try {{ return ({expression}); }} catch (_) {{ return null; }} }})()"
            ));
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let text = self.eval("document.body ? document.body.innerText.slice(0, 3000) : ''");
                panic!(
                    "the page did not reach this state within {PAGE_DEADLINE_MS} ms: {what}\n\
                     page text: {text}\nbrowser errors: {:?}",
                    self.errors
                );
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }

    /// Click the middle of the first element `selector` matches, as a mouse does.
    pub fn click(&mut self, selector: &str) {
        let selector_json = serde_json::to_string(selector).expect("a string serialises");
        let point = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector_json}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ));
        let (x, y) = match point.as_array().map(Vec::as_slice) {
            Some([x, y]) => (x.as_f64().unwrap(), y.as_f64().unwrap()),
            _ => panic!("nothing on the page matches {selector}"),
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Drag with the left button held, as a mouse does: move to `from`, press, move to `to`
    /// in `steps` equal moves, release there.
    pub fn drag(&mut self, from: (f64, f64), to: (f64, f64), steps: u32) {
        assert!(steps > 0, "a drag moves at least once");
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseMoved", "x": from.0, "y": from.1, "button": "none", "buttons": 0}),
        );
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mousePressed", "x": from.0, "y": from.1, "button": "left",
                   "buttons": 1, "clickCount": 1}),
        );
        for step in 1..=steps {
            let fraction = f64::from(step) / f64::from(steps);
            let x = from.0 + (to.0 - from.0) * fraction;
            let y = from.1 + (to.1 - from.1) * fraction;
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": "mouseMoved", "x": x, "y": y, "button": "left", "buttons": 1}),
            );
        }
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseReleased", "x": to.0, "y": to.1, "button": "left",
                   "buttons": 0, "clickCount": 1}),
        );
    }

    /// Focus the field `selector` matches, replace its text with `text`, typed.
    pub fn type_into(&mut self, selector: &str, text: &str) {
        let selector_json = serde_json::to_string(selector).expect("a string serialises");
        let found = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector_json}); if (!e) return false; \
             e.focus(); e.select(); return document.activeElement === e; }})()"
        ));
        assert_eq!(found, json!(true), "cannot focus {selector}");
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Press a key that types no text (Tab), or Enter.
    pub fn press(&mut self, key: &str) {
        let (code, text) = match key {
            "Enter" => (13, "\r"),
            "Tab" => (9, ""),
            other => panic!("no key code for {other}"),
        };
        let down = if text.is_empty() {
            json!({"type": "rawKeyDown", "key": key, "code": key, "windowsVirtualKeyCode": code})
        } else {
            json!({"type": "keyDown", "key": key, "code": key, "windowsVirtualKeyCode": code, "text": text})
        };
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": key, "windowsVirtualKeyCode": code}),
        );
    }

    /// Save what the viewport shows as a PNG.
    pub fn screenshot(&mut self, path: &Path) {
        let answer = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let data = answer["data"].as_str().expect("screenshot data");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("the screenshots' directory can be made");
        }
        std::fs::write(path, base64_decode(data)).expect("the screenshot is written");
    }
}

impl Drop for Browser {
    /// Ask the browser to close (it then ends its renderer and helper processes too), and kill
    /// it if it has not within a few seconds.
    fn drop(&mut self) {
        let _ = self
            .to_browser
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\",\"params\":{}}\0");
        let _ = self.to_browser.flush();
        let deadline = Instant::now() + Duration::from_millis(CLOSE_DEADLINE_MS);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (with padding), as the protocol sends binary data.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut bits = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            bits |= value(*c) << (18 - 6 * i);
        }
        let [_, a, b, c] = bits.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..chunk.len() - 1]);
    }
    out
}

#[test]
fn base64_decodes_with_and_without_padding() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
