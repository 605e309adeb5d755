//! Fault handling of the apply layer without a server: the retry middleware driven by a
//! scripted inner service, the retry arithmetic, pool naming.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use calico_charm::apply::kubeconfig::kubeconfig_path_from;
use calico_charm::apply::pools::{choose_pool_name, contains, normalise_cidr, overlaps};
use calico_charm::apply::retry::{
    BASE_DELAY_ENV, BUDGET_ENV, Budget, RetryLayer, RetrySettings, TIMEOUT_ENV, retry_after,
    retryable_status, transient_error,
};
use http::{HeaderMap, Request, Response, StatusCode};
use kube::client::Body;
use tower::{BoxError, Layer, ServiceExt, service_fn};

fn settings(budget_ms: u64, base_ms: u64) -> RetrySettings {
    RetrySettings {
        budget: Duration::from_millis(budget_ms),
        base_delay: Duration::from_millis(base_ms),
        max_delay: Duration::from_millis(base_ms * 8),
        attempt_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// What the scripted service answers on each attempt.
#[derive(Clone)]
enum Answer {
    Status(u16, Option<&'static str>),
    Io(std::io::ErrorKind),
    Hang,
}

/// Send one request through the retry layer to a service answering `script` in turn (the
/// last answer repeats). Returns the final result, the number of attempts, the bodies the
/// service saw and the time taken.
fn drive(
    settings: RetrySettings,
    script: Vec<Answer>,
) -> (Result<StatusCode, String>, usize, Vec<Vec<u8>>, Duration) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (a, b) = (attempts.clone(), bodies.clone());
    let started = Instant::now();
    let result = rt().block_on(async move {
        let inner = service_fn(move |req: Request<Body>| {
            let n = a.fetch_add(1, Ordering::SeqCst);
            let answer = script
                .get(n)
                .or(script.last())
                .cloned()
                .unwrap_or(Answer::Status(200, None));
            let b = b.clone();
            async move {
                let body = req.into_body().collect_bytes().await.unwrap_or_default();
                b.lock().unwrap().push(body.to_vec());
                match answer {
                    Answer::Status(code, after) => {
                        let mut resp = Response::builder().status(code);
                        if let Some(after) = after {
                            resp = resp.header("Retry-After", after);
                        }
                        Ok::<_, BoxError>(resp.body(Body::empty()).unwrap())
                    }
                    Answer::Io(kind) => {
                        Err(Box::new(std::io::Error::new(kind, "scripted")) as BoxError)
                    }
                    Answer::Hang => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Ok(Response::builder().status(200).body(Body::empty()).unwrap())
                    }
                }
            }
        });
        let svc = RetryLayer::new(Budget::new(settings)).layer(inner);
        let req = Request::builder()
            .method("PATCH")
            .uri("https://k8s.invalid/apis/crd.projectcalico.org/v1/ippools/ipv4")
            .body(Body::from(b"{\"spec\":{}}".to_vec()))
            .unwrap();
        svc.oneshot(req)
            .await
            .map(|r| r.status())
            .map_err(|e| e.to_string())
    });
    let elapsed = started.elapsed();
    let seen = bodies.lock().unwrap().clone();
    (result, attempts.load(Ordering::SeqCst), seen, elapsed)
}

#[test]
fn server_errors_are_retried_with_the_same_request() {
    let (result, attempts, bodies, _) = drive(
        settings(5_000, 10),
        vec![
            Answer::Status(503, None),
            Answer::Status(500, None),
            Answer::Status(200, None),
        ],
    );
    assert_eq!(result, Ok(StatusCode::OK));
    assert_eq!(attempts, 3);
    assert!(bodies.iter().all(|b| b == b"{\"spec\":{}}"), "{bodies:?}");
}

#[test]
fn too_many_requests_honours_retry_after() {
    let (result, attempts, _, elapsed) = drive(
        settings(5_000, 10),
        vec![Answer::Status(429, Some("1")), Answer::Status(201, None)],
    );
    assert_eq!(result, Ok(StatusCode::CREATED));
    assert_eq!(attempts, 2);
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn retry_after_beyond_the_budget_gives_up_at_once() {
    let (result, attempts, _, elapsed) =
        drive(settings(2_000, 10), vec![Answer::Status(429, Some("60"))]);
    assert_eq!(result, Ok(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(attempts, 1);
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
}

#[test]
fn a_persistent_outage_ends_within_the_budget_with_the_last_answer() {
    let (result, attempts, _, elapsed) = drive(settings(600, 20), vec![Answer::Status(503, None)]);
    assert_eq!(result, Ok(StatusCode::SERVICE_UNAVAILABLE));
    assert!(attempts >= 3, "{attempts}");
    assert!(elapsed < Duration::from_millis(1_500), "{elapsed:?}");
}

#[test]
fn client_errors_are_not_retried() {
    for code in [400, 401, 403, 404, 409, 422] {
        let (result, attempts, _, _) = drive(settings(5_000, 10), vec![Answer::Status(code, None)]);
        assert_eq!(result.unwrap().as_u16(), code);
        assert_eq!(attempts, 1, "{code}");
    }
}

#[test]
fn refused_and_reset_connections_are_retried() {
    let (result, attempts, _, _) = drive(
        settings(5_000, 10),
        vec![
            Answer::Io(std::io::ErrorKind::ConnectionRefused),
            Answer::Io(std::io::ErrorKind::ConnectionReset),
            Answer::Status(200, None),
        ],
    );
    assert_eq!(result, Ok(StatusCode::OK));
    assert_eq!(attempts, 3);
}

#[test]
fn tls_failures_are_not_retried() {
    let (result, attempts, _, _) = drive(
        settings(5_000, 10),
        vec![Answer::Io(std::io::ErrorKind::InvalidData)],
    );
    assert!(result.is_err());
    assert_eq!(attempts, 1);
}

#[test]
fn a_hung_request_times_out_within_the_budget() {
    let mut s = settings(1_000, 10);
    s.attempt_timeout = Duration::from_millis(300);
    let (result, attempts, _, elapsed) = drive(s, vec![Answer::Hang]);
    let err = result.unwrap_err();
    // The last attempt's timeout, or the budget running out first (on a loaded machine).
    assert!(err.contains("timed out") || err.contains("budget"), "{err}");
    assert!(attempts >= 2, "{attempts}");
    // Budget 1 s of wall time, whatever the attempts do (the margin is for a loaded
    // machine: without the budget a hung request would take the attempts' whole timeouts).
    assert!(elapsed < Duration::from_millis(3_000), "{elapsed:?}");
}

#[test]
fn backoff_doubles_is_capped_and_jitters_within_half() {
    let s = settings(30_000, 100); // max 800 ms
    for (attempt, full) in [(0, 100), (1, 200), (2, 400), (3, 800), (4, 800), (60, 800)] {
        let low = s.backoff(attempt, 0.0);
        let high = s.backoff(attempt, 1.0);
        assert_eq!(low, Duration::from_millis(full / 2), "attempt {attempt}");
        assert_eq!(high, Duration::from_millis(full), "attempt {attempt}");
        let mid = s.backoff(attempt, 0.5);
        assert!(low <= mid && mid <= high);
    }
    // Out-of-range jitter is clamped, never a panic.
    assert_eq!(s.backoff(0, f64::NAN), Duration::from_millis(100));
    assert_eq!(s.backoff(0, -3.0), Duration::from_millis(50));
}

#[test]
fn budget_is_wall_time_shared_and_spent() {
    let budget = Budget::new(settings(1_000, 10));
    let left = budget.remaining();
    assert!(left <= Duration::from_millis(1_000) && left > Duration::from_millis(900));
    // Time passes whether requests fail or succeed.
    std::thread::sleep(Duration::from_millis(300));
    assert!(budget.remaining() <= Duration::from_millis(700));
    budget.charge(Duration::from_millis(500));
    assert!(budget.remaining() <= Duration::from_millis(200));
    // A spent budget allows no further attempt.
    budget.charge(Duration::from_secs(10));
    assert_eq!(budget.remaining(), Duration::ZERO);
    assert!(budget.spent());
    assert_eq!(budget.attempt_timeout(), Duration::ZERO);
}

#[test]
fn a_spent_budget_fails_the_next_request_at_once_without_sending_it() {
    let (result, attempts, _, elapsed) = drive(settings(0, 10), vec![Answer::Status(200, None)]);
    let err = result.unwrap_err();
    assert!(
        err.contains("budget for the Kubernetes API is spent"),
        "{err}"
    );
    assert_eq!(attempts, 0);
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
}

#[test]
fn settings_come_from_the_environment_names() {
    let env = |name: &str| match name {
        BUDGET_ENV => Some("2.5".to_string()),
        BASE_DELAY_ENV => Some("7".to_string()),
        TIMEOUT_ENV => Some("3".to_string()),
        _ => None,
    };
    let s = RetrySettings::from_lookup(env);
    assert_eq!(s.budget, Duration::from_millis(2_500));
    assert_eq!(s.base_delay, Duration::from_millis(7));
    assert_eq!(s.attempt_timeout, Duration::from_secs(3));
    let garbage = RetrySettings::from_lookup(|_| Some("-1e99x".to_string()));
    assert_eq!(garbage, RetrySettings::default());
    assert_eq!(RetrySettings::default().budget, Duration::from_secs(30));
}

#[test]
fn which_answers_are_transient() {
    for code in [429, 500, 502, 503, 504] {
        assert!(
            retryable_status(StatusCode::from_u16(code).unwrap()),
            "{code}"
        );
    }
    for code in [200, 400, 401, 403, 404, 409, 422] {
        assert!(
            !retryable_status(StatusCode::from_u16(code).unwrap()),
            "{code}"
        );
    }
    let io = |k| std::io::Error::new(k, "x");
    assert!(transient_error(&io(std::io::ErrorKind::ConnectionRefused)));
    assert!(transient_error(&io(std::io::ErrorKind::TimedOut)));
    assert!(transient_error(&io(std::io::ErrorKind::UnexpectedEof)));
    assert!(!transient_error(&io(std::io::ErrorKind::InvalidData)));
    // As hyper-util reports a TLS failure: an InvalidData error wrapped in an Other one.
    let wrapped = std::io::Error::other(io(std::io::ErrorKind::InvalidData));
    assert!(!transient_error(&wrapped));
    let wrapped = std::io::Error::other(io(std::io::ErrorKind::ConnectionReset));
    assert!(transient_error(&wrapped));

    let mut headers = HeaderMap::new();
    assert_eq!(retry_after(&headers), None);
    headers.insert("retry-after", "3".parse().unwrap());
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
    headers.insert(
        "retry-after",
        "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
    );
    assert_eq!(retry_after(&headers), None);
}

#[test]
fn kubeconfig_path_prefers_the_environment() {
    assert_eq!(
        kubeconfig_path_from(None),
        std::path::PathBuf::from("/root/.kube/config")
    );
    assert_eq!(
        kubeconfig_path_from(Some("/srv/kc".into())),
        std::path::PathBuf::from("/srv/kc")
    );
    assert_eq!(
        kubeconfig_path_from(Some("".into())),
        std::path::PathBuf::from("/root/.kube/config")
    );
}

#[test]
fn pool_ranges_and_names() {
    let n = |s| normalise_cidr(s).unwrap();
    assert_eq!(n("10.1.2.3/16").to_string(), "10.1.0.0/16");
    assert_eq!(normalise_cidr("nonsense"), None);
    assert!(contains(n("10.0.0.0/8"), n("10.1.0.0/26")));
    assert!(!contains(n("10.1.0.0/26"), n("10.0.0.0/8")));
    assert!(overlaps(n("10.1.0.0/26"), n("10.0.0.0/8")));
    assert!(!overlaps(n("10.1.0.0/16"), n("10.2.0.0/16")));
    assert!(!overlaps(n("10.1.0.0/16"), n("fd00::/64")));

    let taken = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        choose_pool_name("ipv4", n("10.2.0.0/16"), &taken(&[])),
        "ipv4"
    );
    assert_eq!(
        choose_pool_name("ipv4", n("10.2.0.0/16"), &taken(&["ipv4"])),
        "ipv4-10-2-0-0-16"
    );
    assert_eq!(
        choose_pool_name(
            "ipv4",
            n("10.2.0.0/16"),
            &taken(&["ipv4", "ipv4-10-2-0-0-16"])
        ),
        "ipv4-10-2-0-0-16-2"
    );
    assert_eq!(
        choose_pool_name("ipv6", n("fd00:10::/64"), &taken(&["ipv6"])),
        "ipv6-fd00-10---64"
    );
}
