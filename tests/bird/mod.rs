//! A network lab of Linux network namespaces running real BIRD 1.6 (Debian's `bird`).
//!
//! Every subnet is a bridge in a namespace of its own; each Calico node and router gets a
//! veth into the bridges of its subnets, created directly inside the namespaces (nothing is
//! added to the host's namespace). Each speaker runs `bird -f` with its own control socket
//! in the lab's temporary directory. [`Lab`]'s `Drop` kills every daemon and deletes every
//! namespace, also when a test panics.
//!
//! Needs root. Without root the tests fail, unless `CALICO_CHARM_SKIP_NETNS=1` says to skip.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Whether the lab can run; `false` only when skipping was asked for explicitly.
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if std::env::var("CALICO_CHARM_SKIP_NETNS").is_ok_and(|v| v == "1") {
        eprintln!("skipping: CALICO_CHARM_SKIP_NETNS=1");
        return false;
    }
    assert!(
        root,
        "the BIRD topology tests need root (network namespaces); run as root, or set \
         CALICO_CHARM_SKIP_NETNS=1 to skip them explicitly"
    );
    for tool in ["ip", "bird", "birdc", "ping"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
            || Path::new("/usr/sbin").join(tool).is_file();
        assert!(
            found,
            "{tool} is missing: install bird, iproute2 and iputils-ping (.ci/run does)"
        );
    }
    true
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static LAB_SEQ: AtomicUsize = AtomicUsize::new(0);

/// One BIRD daemon in one namespace.
pub struct Daemon {
    pub ns: String,
    pub socket: PathBuf,
    child: Child,
}

pub struct Lab {
    prefix: String,
    pub dir: tempfile::TempDir,
    namespaces: Vec<String>,
    daemons: Vec<Daemon>,
    links: usize,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        let seq = LAB_SEQ.fetch_add(1, Ordering::SeqCst);
        Lab {
            prefix: format!("cc{}-{seq}-{tag}", std::process::id()),
            dir: tempfile::tempdir().expect("tempdir"),
            namespaces: Vec::new(),
            daemons: Vec::new(),
            links: 0,
        }
    }

    fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// A new namespace with `lo` up; returns its full name.
    pub fn namespace(&mut self, short: &str) -> String {
        let ns = self.name(short);
        must(Command::new("ip").args(["netns", "add", &ns]));
        self.namespaces.push(ns.clone());
        self.exec(&ns, &["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Run a command in a namespace; panics on failure.
    pub fn exec(&self, ns: &str, args: &[&str]) -> String {
        must(Command::new("ip").args(["netns", "exec", ns]).args(args))
    }

    /// Run a command in a namespace and return its output, whatever the status.
    pub fn try_exec(&self, ns: &str, args: &[&str]) -> Output {
        run(Command::new("ip").args(["netns", "exec", ns]).args(args))
    }

    /// A switch (bridge) for one subnet; returns its namespace.
    pub fn switch(&mut self, short: &str) -> String {
        let ns = self.namespace(short);
        self.exec(&ns, &["ip", "link", "add", "br0", "type", "bridge"]);
        self.exec(&ns, &["ip", "link", "set", "br0", "up"]);
        ns
    }

    /// Plug `member` into `switch` as interface `ifname` with `address` (`IP/PREFIX`).
    pub fn plug(&mut self, switch: &str, member: &str, ifname: &str, address: &str) {
        self.links += 1;
        let port = format!("p{}", self.links);
        must(Command::new("ip").args([
            "link", "add", "name", &port, "netns", switch, "type", "veth", "peer", "name", ifname,
            "netns", member,
        ]));
        self.exec(switch, &["ip", "link", "set", &port, "master", "br0", "up"]);
        self.exec(member, &["ip", "addr", "add", address, "dev", ifname]);
        self.exec(member, &["ip", "link", "set", ifname, "up"]);
    }

    /// A point-to-point veth between two namespaces.
    pub fn wire(&mut self, a: &str, a_if: &str, a_addr: &str, b: &str, b_if: &str, b_addr: &str) {
        must(Command::new("ip").args([
            "link", "add", "name", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns",
            b,
        ]));
        self.exec(a, &["ip", "addr", "add", a_addr, "dev", a_if]);
        self.exec(a, &["ip", "link", "set", a_if, "up"]);
        self.exec(b, &["ip", "addr", "add", b_addr, "dev", b_if]);
        self.exec(b, &["ip", "link", "set", b_if, "up"]);
    }

    pub fn forward(&self, ns: &str) {
        self.exec(ns, &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    }

    /// Start `bird -f` in `ns` with `config`; waits (bounded) until its socket answers.
    pub fn bird(&mut self, ns: &str, short: &str, config: &str) -> usize {
        let conf = self.dir.path().join(format!("{short}.conf"));
        let socket = self.dir.path().join(format!("{short}.ctl"));
        let log = self.dir.path().join(format!("{short}.log"));
        std::fs::write(&conf, config).expect("write bird config");
        let logf = std::fs::File::create(&log).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log"))
            .stderr(logf)
            .spawn()
            .expect("start bird");
        self.daemons.push(Daemon {
            ns: ns.to_string(),
            socket: socket.clone(),
            child,
        });
        let index = self.daemons.len() - 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = run(Command::new("birdc")
                .arg("-s")
                .arg(&socket)
                .arg("show status"));
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Daemon is up")
            {
                break;
            }
            if let Ok(Some(status)) = self.daemons[index].child.try_wait() {
                panic!(
                    "bird in {ns} exited ({status}): {}\nconfig:\n{config}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "bird in {ns} did not answer on {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        index
    }

    pub fn daemon(&self, index: usize) -> &Daemon {
        &self.daemons[index]
    }

    /// `birdc show protocols` as (name, state info) pairs.
    pub fn protocols(&self, index: usize) -> Vec<(String, String)> {
        let out = run(Command::new("birdc")
            .arg("-s")
            .arg(&self.daemons[index].socket)
            .arg("show protocols"));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let name = words.next()?;
                let proto = words.next()?;
                (proto == "BGP").then(|| (name.to_string(), words.collect::<Vec<_>>().join(" ")))
            })
            .collect()
    }

    pub fn established(&self, index: usize, protocol: &str) -> bool {
        self.protocols(index)
            .iter()
            .any(|(n, info)| n == protocol && info.contains("Established"))
    }

    /// Poll `check` every 200 ms until it holds or `limit` passes.
    pub fn wait_until(&self, limit: Duration, mut check: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if check() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How many routes for `prefix` BIRD's table holds (the best and the alternatives).
    pub fn bgp_routes(&self, index: usize, prefix: &str) -> usize {
        let out = run(Command::new("birdc")
            .arg("-s")
            .arg(&self.daemons[index].socket)
            .arg(format!("show route {prefix}")));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(" via "))
            .count()
    }

    /// The kernel route for `prefix` in `ns` that BIRD installed, if any.
    pub fn bird_route(&self, ns: &str, prefix: &str) -> Option<String> {
        let out = self.try_exec(
            ns,
            &[
                "ip", "-4", "route", "show", "exact", prefix, "proto", "bird",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    pub fn ping(&self, ns: &str, from: &str, to: &str) -> bool {
        self.try_exec(
            ns,
            &["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", from, to],
        )
        .status
        .success()
    }

    /// Everything BIRD logged and reported, for a failure message.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for d in &self.daemons {
            let out = run(Command::new("birdc")
                .arg("-s")
                .arg(&d.socket)
                .arg("show protocols all"));
            let _ = writeln!(s, "== {}\n{}", d.ns, String::from_utf8_lossy(&out.stdout));
            let routes = self.try_exec(&d.ns, &["ip", "-4", "route"]);
            let _ = writeln!(s, "-- routes\n{}", String::from_utf8_lossy(&routes.stdout));
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Timers for quick tests: retry every second, hold 3 s.
pub const TIMERS: &str = "  connect delay time 1;\n  connect retry time 1;\n  error wait time 1, 2;\n  \
     hold time 3;\n  startup hold time 3;\n  keepalive time 1;\n";
