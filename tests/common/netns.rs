//! A network namespace of a test's own, joined to the host by a veth pair, for partitions,
//! packet loss and latency between a worker and the store. Traffic stays between the namespace
//! and the host end of the pair; a TCP relay on the host end forwards it to a server on
//! loopback. Loss and one-way cuts are nftables rules inside the namespace (not `tc netem`,
//! which many kernels, this CI's included, are built without); latency is the relay's.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `ip …` (or `nft …`), failing with its output.
fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    let o = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()))
    }
}

/// Why namespaces with nftables rules cannot be made here (not root, no `ip`, no veth, no
/// `nft`), or `None` when they can.
pub fn unavailable() -> Option<String> {
    Netns::new(250).and_then(|ns| ns.lossy(0)).err()
}

pub struct Netns {
    pub name: String,
    host_if: String,
    ns_if: String,
    /// The host end's address, which the namespace reaches.
    pub host_ip: Ipv4Addr,
    delay_ms: Arc<AtomicU64>,
}

impl Netns {
    /// Namespace `tune-test-<id>-<pid>` with 10.231.<id>.2/30 inside and .1 on the host end.
    pub fn new(id: u8) -> Result<Netns, String> {
        let pid = std::process::id();
        let ns = Netns {
            name: format!("tune-test-{id}-{pid}"),
            host_if: format!("tth{id}x{}", pid % 100_000),
            ns_if: format!("ttw{id}x{}", pid % 100_000),
            host_ip: Ipv4Addr::new(10, 231, id, 1),
            delay_ms: Arc::new(AtomicU64::new(0)),
        };
        sh("ip", &["netns", "add", &ns.name])?;
        sh("ip", &["link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns.ns_if])?;
        sh("ip", &["link", "set", &ns.ns_if, "netns", &ns.name])?;
        sh("ip", &["addr", "add", &format!("10.231.{id}.1/30"), "dev", &ns.host_if])?;
        sh("ip", &["link", "set", &ns.host_if, "up"])?;
        ns.exec("ip", &["addr", "add", &format!("10.231.{id}.2/30"), "dev", &ns.ns_if])?;
        ns.exec("ip", &["link", "set", &ns.ns_if, "up"])?;
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn exec(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// The prefix that runs a command inside the namespace.
    pub fn wrapper(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// Cuts both directions (the host end goes down) or heals them.
    pub fn partition(&self, cut: bool) -> Result<(), String> {
        sh("ip", &["link", "set", &self.host_if, if cut { "down" } else { "up" }])
    }

    /// Drops everything the namespace sends (the worker's requests), while the host's packets
    /// still arrive: a one-way partition.
    pub fn drop_outgoing(&self) -> Result<(), String> {
        self.rules(&["add rule inet tune_test out drop"])
    }

    /// Removes the nftables rules (loss, one-way cut), healing those faults.
    pub fn clear_rules(&self) -> Result<(), String> {
        self.exec("nft", &["delete", "table", "inet", "tune_test"])
    }

    /// Drops `percent` % of the packets in each direction, at random.
    pub fn lossy(&self, percent: u8) -> Result<(), String> {
        let out = format!("add rule inet tune_test out numgen random mod 100 < {percent} counter drop");
        let inn = format!("add rule inet tune_test in numgen random mod 100 < {percent} counter drop");
        self.rules(&[&out, &inn])
    }

    /// How many packets the loss rules have dropped so far.
    pub fn dropped(&self) -> Result<u64, String> {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "list", "table", "inet", "tune_test"])
            .output()
            .map_err(|e| e.to_string())?;
        let listing = String::from_utf8_lossy(&o.stdout);
        Ok(listing
            .split("packets ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum())
    }

    /// The table `tune_test` with `out` and `in` filter chains inside the namespace, then `rules`.
    fn rules(&self, rules: &[&str]) -> Result<(), String> {
        let mut script = String::from(
            "add table inet tune_test\n\
             add chain inet tune_test out { type filter hook output priority 0; }\n\
             add chain inet tune_test in { type filter hook input priority 0; }\n",
        );
        for r in rules {
            script.push_str(r);
            script.push('\n');
        }
        let path = std::env::temp_dir().join(format!("{}.nft", self.name));
        std::fs::write(&path, script).map_err(|e| e.to_string())?;
        let done = self.exec("nft", &["-f", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(path);
        done
    }

    /// Sets how long the relays hold each chunk, each way (latency); zero by default.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// A TCP relay on the host end to `target` (a server on loopback) that holds each chunk
    /// for the delay set with `set_delay` before passing it on; returns its port.
    pub fn relay(&self, target: std::net::SocketAddr) -> Result<u16, String> {
        let delay_ms = self.delay_ms.clone();
        let listener = TcpListener::bind((self.host_ip, 0)).map_err(|e| format!("relay: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(target) else { continue };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    let delay_ms = delay_ms.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            std::thread::sleep(Duration::from_millis(delay_ms.load(Ordering::Relaxed)));
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Ok(port)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh("ip", &["netns", "del", &self.name]);
        let _ = sh("ip", &["link", "del", &self.host_if]);
    }
}
