//! `tune dashboard` as a child process, and plain HTTP to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};

use super::Fixture;

/// A running dashboard; killed when dropped.
pub struct Dashboard {
    child: Child,
    /// The URL it printed (with `?token=…` where it has one).
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Dashboard {
    /// Starts `tune dashboard ARGS --port 0` in the fixture and waits for the URL it prints.
    pub fn start(f: &Fixture, args: &[&str]) -> Dashboard {
        let mut all = vec!["dashboard", "--port", "0"];
        all.extend_from_slice(args);
        let mut child = f.cmd(&all).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "the dashboard printed its URL: {line:?}");
        let addr = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
        Dashboard { child, url, addr }
    }

    /// GET `path` (from the root, no leading slash) with an optional bearer token:
    /// (status, body).
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut request = agent.get(format!("http://{}/{path}", self.addr));
        if let Some(t) = token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        let mut response = request.call().unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap_or_default())
    }

    /// GET `path` as JSON, which must succeed.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path, None);
        assert_eq!(status, 200, "GET /{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// A request line sent as written (no client normalises `..` away): (status line, whole reply).
    pub fn raw(&self, method: &str, target: &str) -> (String, String) {
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(stream, "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        (reply.lines().next().unwrap_or_default().to_string(), reply)
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
