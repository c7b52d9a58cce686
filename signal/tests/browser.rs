//! The demo page in real, headless Chromium browsers driven through WebDriver (chromedriver),
//! against a running service: two browsers join one call and chat over a data channel; both
//! press Call at once (glare) and connect exactly once; the service restarts mid-call with an
//! empty store and the call goes on while the pages reconnect and rejoin; a third browser finds
//! no seat (409); a browser that vanishes frees its seat after the lease and a newcomer takes
//! it and calls the member left.
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium`, `chromium-driver`; or
//! `ICEPACT_CHROMIUM`, `ICEPACT_CHROMEDRIVER`). Without them the test prints `SKIPPED` and
//! passes, unless `CI` is set, where it fails. A screenshot of two connected pages is saved to
//! `target/browser-artifacts/two-connected.png`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use icepact_signal::{start, Config, MemoryStore, Running};
use serde_json::Value;

fn find(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
    chromium: PathBuf,
    profiles: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn driver() -> Option<Driver> {
    let chromium = find(
        "ICEPACT_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let chromedriver = find("ICEPACT_CHROMEDRIVER", &["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
        );
        println!("SKIPPED: browser tests need chromium and chromedriver (Debian: chromium, chromium-driver)");
        return None;
    };
    let port = free_port();
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let profiles = std::env::temp_dir().join(format!("icepact-browser-{port}"));
    let d = Driver {
        child,
        url,
        chromium,
        profiles,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(d)
}

/// A new headless browser.
async fn browser(d: &Driver, n: usize) -> Client {
    let profile = d.profiles.join(format!("profile-{n}"));
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": d.chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                // Host candidates as addresses, not mDNS names (nothing resolves them here).
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=900,1000",
            ]
        }
    });
    let Value::Object(caps) = caps else {
        unreachable!("a JSON object literal")
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a WebDriver session")
}

async fn service(addr: SocketAddr) -> Running {
    let mut config = Config::local();
    config.addr = addr;
    // Short leases so that a vanished browser's seat frees within the test.
    config.ping_interval = Duration::from_millis(500);
    config.lease_timeout = Duration::from_secs(3);
    start(config, MemoryStore::new(), std::future::pending())
        .await
        .expect("the service starts")
}

/// The page's status (`window.icepactDemo`), without its log.
async fn status(c: &Client) -> Value {
    c.execute(
        "const d = window.icepactDemo; const { log, ...rest } = d; \
         return Object.assign({}, rest, { pc: document.getElementById('pc').textContent, \
                                         dc: document.getElementById('dc').textContent });",
        vec![],
    )
    .await
    .expect("the page answers")
}

async fn page_log(c: &Client) -> String {
    c.execute("return window.icepactDemo.log.join('\\n')", vec![])
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits until `ok` holds for the page's status; fails with both the status and the page's log.
async fn wait(c: &Client, what: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status(c).await;
        if ok(&s) {
            return s;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not within {timeout:?}\nstatus: {s}\nlog:\n{}",
                page_log(c).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn open(c: &Client, addr: SocketAddr, query: &str) {
    c.goto(&format!("http://{addr}/{query}"))
        .await
        .expect("the page loads");
    wait(c, "page ready", Duration::from_secs(10), |s| {
        s["ready"] == true
    })
    .await;
}

async fn click(c: &Client, id: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

async fn join(c: &Client, call: &str) {
    let input = c.find(Locator::Id("call-name")).await.expect("#call-name");
    input.clear().await.expect("clear");
    input.send_keys(call).await.expect("type");
    click(c, "join").await;
}

async fn say(c: &Client, text: &str) {
    let input = c.find(Locator::Id("message")).await.expect("#message");
    input.send_keys(text).await.expect("type");
    click(c, "send").await;
}

fn received(s: &Value, text: &str) -> bool {
    s["received"]
        .as_array()
        .is_some_and(|r| r.iter().any(|m| m == text))
}

fn in_call(s: &Value) -> bool {
    s["state"] == "InCall" && s["dc"] == "open"
}

const T: Duration = Duration::from_secs(20);

fn no_violations(s: &Value) {
    assert_eq!(
        s["violations"],
        serde_json::json!([]),
        "every change is an edge of the table: {s}"
    );
}

/// A and B join, A calls, they chat; a screenshot of both pages is saved.
async fn two_browsers_chat(a: &Client, b: &Client, addr: SocketAddr, artifacts: &Path) {
    open(a, addr, "").await;
    open(b, addr, "").await;
    join(a, "chat").await;
    wait(a, "A in the room", T, |s| {
        s["state"] == "InRoom" && s["link"] == "Up"
    })
    .await;
    join(b, "chat").await;
    wait(b, "B in the room", T, |s| s["state"] == "InRoom").await;
    click(a, "call").await;
    wait(a, "A in the call", T, in_call).await;
    wait(b, "B in the call", T, in_call).await;
    say(a, "hello from A").await;
    say(b, "hello from B").await;
    wait(b, "B got A's message", T, |s| received(s, "hello from A")).await;
    let sa = wait(a, "A got B's message", T, |s| received(s, "hello from B")).await;
    let sb = status(b).await;
    for s in [&sa, &sb] {
        no_violations(s);
        assert_eq!(s["connectedCount"], 1, "{s}");
    }
    std::fs::create_dir_all(artifacts).expect("artifacts directory");
    for (name, c) in [("two-connected-a.png", a), ("two-connected-b.png", b)] {
        let png = c.screenshot().await.expect("a screenshot");
        std::fs::write(artifacts.join(name), png).expect("screenshot saved");
    }
}

/// Both press Call within milliseconds while their incoming signaling is slowed down
/// (`?delay=1000`), so both offers cross: the impolite side ignores one, the polite side rolls
/// its own back, and the pages connect exactly once.
async fn glare_connects_once(a: &Client, b: &Client, addr: SocketAddr) {
    open(a, addr, "?delay=1000").await;
    open(b, addr, "?delay=1000").await;
    join(a, "glare").await;
    join(b, "glare").await;
    wait(a, "A in the room", T, |s| s["state"] == "InRoom").await;
    wait(b, "B in the room", T, |s| s["state"] == "InRoom").await;
    let press = "document.getElementById('call').click(); return Date.now();";
    let (ta, tb) = tokio::join!(a.execute(press, vec![]), b.execute(press, vec![]));
    let (ta, tb) = (ta.expect("A pressed"), tb.expect("B pressed"));
    let apart = (ta.as_i64().unwrap_or(0) - tb.as_i64().unwrap_or(0)).abs();
    assert!(
        apart < 900,
        "pressed {apart} ms apart: the offers would not cross"
    );
    wait(a, "A in the call", T, in_call).await;
    wait(b, "B in the call", T, in_call).await;
    say(a, "after glare").await;
    wait(b, "B got A's message", T, |s| received(s, "after glare")).await;
    let (sa, sb) = (status(a).await, status(b).await);
    for s in [&sa, &sb] {
        no_violations(s);
        assert_eq!(s["connectedCount"], 1, "connected exactly once: {s}");
    }
    let ignored = sa["ignoredOffers"].as_u64().unwrap() + sb["ignoredOffers"].as_u64().unwrap();
    let rolled = sa["rollbacks"].as_u64().unwrap() + sb["rollbacks"].as_u64().unwrap();
    assert_eq!(
        (ignored, rolled),
        (1, 1),
        "both offers crossed: one ignored, one rolled back\nA: {sa}\nB: {sb}"
    );
}

/// The service stops (closing the WebSockets with 1001) and a new instance with an empty store
/// starts on the same address: the data channel stays open, both pages reconnect, rejoin
/// (their tokens are unknown now) and show the call going on.
async fn service_restart_mid_call(
    a: &Client,
    b: &Client,
    running: Running,
    addr: SocketAddr,
) -> Running {
    running.shutdown().await;
    wait(a, "A sees signaling lost", T, |s| s["link"] != "Up").await;
    let s = status(a).await;
    assert_eq!(
        s["state"], "InCall",
        "the call survives the lost signaling: {s}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    say(a, "while signaling is down").await;
    wait(
        b,
        "B got the message sent while signaling was down",
        T,
        |s| received(s, "while signaling is down"),
    )
    .await;
    let running = service(addr).await;
    for (name, c) in [("A", a), ("B", b)] {
        let s = wait(c, &format!("{name} back in the room"), T, |s| {
            s["link"] == "Up" && s["rejoins"].as_u64() >= Some(1)
        })
        .await;
        assert_eq!(s["state"], "InCall", "{s}");
        assert!(s["reconnects"].as_u64() >= Some(1), "{s}");
        no_violations(&s);
        assert_eq!(
            s["connectedCount"], 1,
            "the peer connection never dropped: {s}"
        );
    }
    say(b, "after the restart").await;
    wait(a, "A got B's message after the restart", T, |s| {
        received(s, "after the restart")
    })
    .await;
    running
}

/// A third browser finds no seat; when B vanishes, its seat frees after the lease and the
/// newcomer takes it and calls A.
async fn full_call_and_a_vanished_member(a: &Client, b: Client, c: &Client, addr: SocketAddr) {
    open(c, addr, "").await;
    join(c, "chat").await;
    let s = wait(c, "C refused", T, |s| s["lastError"] == "full").await;
    assert_eq!(s["state"], "Disconnected", "{s}");
    no_violations(&s);
    // B's browser goes away without a word.
    b.close().await.expect("B's session ends");
    let gone = Instant::now();
    // C retries until its join succeeds: only once B's lease ran out.
    loop {
        join(c, "chat").await;
        let s = wait(c, "C's join answered", T, |s| {
            s["lastError"] == "full" && s["state"] == "Disconnected" || s["state"] == "InRoom"
        })
        .await;
        if s["state"] == "InRoom" {
            break;
        }
        assert!(
            gone.elapsed() < Duration::from_secs(20),
            "B's seat never freed: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let waited = gone.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "the seat freed before the lease ran out ({waited:?})"
    );
    click(c, "call").await;
    wait(c, "C in the call", T, in_call).await;
    wait(a, "A in the call with C", T, |s| {
        in_call(s) && s["connectedCount"] == 2
    })
    .await;
    say(c, "hello from C").await;
    wait(a, "A got C's message", T, |s| received(s, "hello from C")).await;
    no_violations(&status(a).await);
    no_violations(&status(c).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_in_chromium() {
    let Some(d) = driver().await else { return };
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-artifacts");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut running = service(addr).await;
    let a = browser(&d, 0).await;
    let b = browser(&d, 1).await;

    two_browsers_chat(&a, &b, addr, &artifacts).await;
    running = service_restart_mid_call(&a, &b, running, addr).await;

    let g1 = browser(&d, 2).await;
    let g2 = browser(&d, 3).await;
    glare_connects_once(&g1, &g2, addr).await;
    let _ = g1.close().await;
    let _ = g2.close().await;

    let c = browser(&d, 4).await;
    full_call_and_a_vanished_member(&a, b, &c, addr).await;
    let _ = a.close().await;
    let _ = c.close().await;
    running.shutdown().await;
}
