//! Retrying transient Kubernetes API faults within a per-hook budget.
//!
//! A hook holds the machine lock, so the principal waits while we retry: every request of a
//! hook draws from one [`Budget`] (30 s of wall time, however the time is spent). Transient faults (connection refused or
//! reset, timeouts, 429, 5xx) are retried with exponential backoff, jittered to ½–1 of it
//! (so that units retrying together spread out, yet none retries at once),
//! honouring `Retry-After`; once the budget is spent the last answer is passed on, and
//! converge reports `waiting`. [`RetryLayer`] does this for every request of a kube
//! `Client`.

use std::error::Error as StdError;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, Request, Response, StatusCode};
use kube::client::Body;
use tokio::time::Instant;
use tower::buffer::Buffer;
use tower::{BoxError, Layer, Service, ServiceExt};

/// Environment variable: total retry budget of a hook, in seconds (default 30).
pub const BUDGET_ENV: &str = "CALICO_CHARM_API_BUDGET_SECS";
/// Environment variable: first backoff delay, in milliseconds (default 200).
pub const BASE_DELAY_ENV: &str = "CALICO_CHARM_API_BASE_DELAY_MS";
/// Environment variable: timeout of one request, in seconds (default 15).
pub const TIMEOUT_ENV: &str = "CALICO_CHARM_API_TIMEOUT_SECS";

/// How requests are retried.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrySettings {
    /// Total wall time a hook may spend on the Kubernetes API (requests, answers, waits).
    pub budget: Duration,
    /// First backoff delay; each retry doubles it up to `max_delay`.
    pub base_delay: Duration,
    /// Cap of one backoff delay (a longer `Retry-After` is still honoured if the budget
    /// allows).
    pub max_delay: Duration,
    /// Deadline of one attempt: connect, response head and the whole body.
    pub attempt_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            budget: Duration::from_secs(30),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl RetrySettings {
    /// Defaults overridden by [`BUDGET_ENV`], [`BASE_DELAY_ENV`] and [`TIMEOUT_ENV`]
    /// (unparsable values are ignored).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Self::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut settings = RetrySettings::default();
        let secs = |name: &str| {
            lookup(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0 && *v < 86_400.0)
                .map(Duration::from_secs_f64)
        };
        if let Some(budget) = secs(BUDGET_ENV) {
            settings.budget = budget;
        }
        if let Some(ms) = lookup(BASE_DELAY_ENV).and_then(|v| v.trim().parse::<u64>().ok()) {
            settings.base_delay = Duration::from_millis(ms.min(60_000));
            settings.max_delay = settings.max_delay.max(settings.base_delay);
        }
        if let Some(timeout) = secs(TIMEOUT_ENV).filter(|t| !t.is_zero()) {
            settings.attempt_timeout = timeout;
            settings.connect_timeout = settings.connect_timeout.min(timeout);
        }
        settings
    }

    /// The backoff before retry number `attempt` (0-based), for a `jitter` in `[0, 1]`:
    /// `base · 2^attempt`, capped at `max_delay`, scaled into `[½, 1]` of that.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.max_delay);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        exp.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// The time one hook may spend on the Kubernetes API, shared by all its requests: a wall-clock
/// deadline (`settings.budget` from the moment the budget is made, and never past the hook's
/// own deadline, [`crate::deadline`]). Slow answers spend it as surely as failed ones, so a
/// server that answers every request slowly cannot stretch a hook either.
#[derive(Debug)]
pub struct Budget {
    settings: RetrySettings,
    started: Instant,
    /// Time counted on top of the wall clock ([`Budget::charge`]).
    extra: Mutex<Duration>,
}

impl Budget {
    pub fn new(settings: RetrySettings) -> Arc<Budget> {
        Arc::new(Budget {
            settings,
            started: Instant::now(),
            extra: Mutex::new(Duration::ZERO),
        })
    }

    pub fn settings(&self) -> &RetrySettings {
        &self.settings
    }

    /// Time still available: the budget less the time since it was made (and any charges),
    /// no more than what is left of the hook's deadline.
    pub fn remaining(&self) -> Duration {
        let extra = self
            .extra
            .lock()
            .map(|s| *s)
            .unwrap_or(self.settings.budget);
        let own = self
            .settings
            .budget
            .saturating_sub(self.started.elapsed().saturating_add(extra));
        match crate::deadline::remaining() {
            Some(hook) => own.min(hook),
            None => own,
        }
    }

    /// Whether nothing is left.
    pub fn spent(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Count time lost outside this budget's clock (tests; the wall clock counts the rest).
    pub fn charge(&self, lost: Duration) {
        if let Ok(mut extra) = self.extra.lock() {
            *extra = extra.saturating_add(lost);
        }
    }

    /// Timeout of the next attempt, response body included: the attempt timeout, but no more
    /// than the budget left. Zero when the budget is spent (the attempt is then not made).
    pub fn attempt_timeout(&self) -> Duration {
        self.settings.attempt_timeout.min(self.remaining())
    }
}

/// The hook's time for the Kubernetes API ran out before a request could be made.
#[derive(Debug, thiserror::Error)]
#[error("the hook's {0:?} budget for the Kubernetes API is spent (the API answers too slowly)")]
pub(crate) struct BudgetSpent(pub Duration);

/// The response body did not arrive within its request's deadline.
#[derive(Debug, thiserror::Error)]
#[error("the response body did not arrive within {0:?}")]
pub(crate) struct BodyTimedOut(pub Duration);

/// The response body is larger than [`MAX_RESPONSE_BODY`].
#[derive(Debug, thiserror::Error)]
#[error("the response body is larger than the charm's cap of {} MiB", .0 / (1024 * 1024))]
pub(crate) struct BodyTooLarge(pub u64);

/// The largest response body the charm reads (a list of every IPAM block of a large cluster
/// stays far below it; an answer that never ends stops here).
pub const MAX_RESPONSE_BODY: u64 = 32 * 1024 * 1024;

/// A response body read within a deadline (the request's, which also covers the response
/// head) and up to a size cap: a server that trickles bytes or never ends its body cannot
/// hold the hook or fill the memory.
pub struct BoundedBody<B> {
    inner: Pin<Box<B>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    /// The hook's API budget, when it (not the request's own timeout) set the deadline.
    budget: Option<Duration>,
    read: u64,
    limit: u64,
    failed: bool,
}

impl<B> BoundedBody<B> {
    pub fn new(inner: B, deadline: Instant, timeout: Duration, limit: u64) -> Self {
        BoundedBody {
            inner: Box::pin(inner),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            timeout,
            budget: None,
            read: 0,
            limit,
            failed: false,
        }
    }
}

impl<B> http_body::Body for BoundedBody<B>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.failed = true;
            let err: BoxError = match this.budget {
                Some(budget) => Box::new(BudgetSpent(budget)),
                None => Box::new(BodyTimedOut(this.timeout)),
            };
            return Poll::Ready(Some(Err(err)));
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len() as u64);
                    if this.read > this.limit {
                        this.failed = true;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(this.limit)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an HTTP status is worth retrying: 429 and every 5xx.
pub fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The `Retry-After` of a response, when given in seconds (as the API server does).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(86_400)))
}

/// An attempt that took longer than its timeout.
#[derive(Debug, thiserror::Error)]
#[error("request timed out after {0:?}")]
pub(crate) struct AttemptTimedOut(pub Duration);

/// Whether a failure to get any answer is worth retrying: connection refused, reset or
/// closed, timeouts, DNS hiccups. TLS and credential problems are not (retrying cannot fix
/// a certificate the client does not trust).
pub fn transient_error(err: &(dyn StdError + 'static)) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    let mut transient = true;
    while let Some(e) = current {
        if e.is::<AttemptTimedOut>() || e.is::<BudgetSpent>() {
            return true;
        }
        if e.is::<kube::client::AuthError>() {
            return false;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            // TLS failures surface as InvalidData, possibly below a generic wrapper.
            if matches!(
                io.kind(),
                K::InvalidData | K::InvalidInput | K::PermissionDenied | K::Unsupported
            ) {
                transient = false;
            }
        }
        current = next_cause(e);
    }
    transient
}

/// The cause below an error. `std::io::Error::source` skips the error an `io::Error`
/// wraps (it returns that error's own source), so look inside wrapped `io::Error`s.
fn next_cause<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    match e.downcast_ref::<std::io::Error>() {
        Some(io) => io
            .get_ref()
            .map(|inner| inner as &(dyn StdError + 'static))
            .or_else(|| e.source()),
        None => e.source(),
    }
}

/// A short description of a failure for an operator: the innermost cause
/// (`Connection refused (os error 111)`), not the chain of wrappers.
pub(crate) fn describe_error(err: &(dyn StdError + 'static)) -> String {
    let mut current: &(dyn StdError + 'static) = err;
    let mut best = current.to_string();
    while let Some(next) = current.source() {
        let text = next.to_string();
        if !text.is_empty() {
            best = text;
        }
        current = next;
    }
    best
}

/// A number in `[0, 1)` from the standard library's randomly seeded hasher (no RNG crate).
fn jitter() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// A tower layer that retries a kube client's requests within a [`Budget`].
#[derive(Clone, Debug)]
pub struct RetryLayer {
    budget: Arc<Budget>,
}

impl RetryLayer {
    pub fn new(budget: Arc<Budget>) -> Self {
        RetryLayer { budget }
    }
}

impl<S> Layer<S> for RetryLayer
where
    S: Service<Request<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + Sync,
{
    type Service = RetryService<Buffer<Request<Body>, S::Future>>;

    /// Wraps `inner` in a [`Buffer`] (so that it can be called again for a retry); needs a
    /// Tokio runtime.
    fn layer(&self, inner: S) -> Self::Service {
        RetryService::new(Buffer::new(inner, 64), self.budget.clone())
    }
}

/// See [`RetryLayer`]. The inner service must be cheap to clone (a [`Buffer`]).
#[derive(Clone, Debug)]
pub struct RetryService<S> {
    inner: S,
    budget: Arc<Budget>,
}

impl<S> RetryService<S> {
    pub fn new(inner: S, budget: Arc<Budget>) -> Self {
        RetryService { inner, budget }
    }
}

/// Copy a request whose body is in memory (every request the charm makes); `None` for a
/// streaming body, which is then sent once.
fn copy_request(req: &Request<Body>) -> Option<Request<Body>> {
    let body = req.body().try_clone()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    Some(copy)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<Body>> for RetryService<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<BoundedBody<B>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<BoundedBody<B>>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is awaited per attempt, on a clone of the inner service.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let budget = self.budget.clone();
        Box::pin(async move {
            let mut original = Some(req);
            let mut attempt: u32 = 0;
            loop {
                let Some(template) = original.as_ref() else {
                    return Err(BoxError::from("request already sent"));
                };
                let (request, last) = match copy_request(template) {
                    Some(copy) => (copy, false),
                    None => match original.take() {
                        Some(req) => (req, true),
                        None => return Err(BoxError::from("request already sent")),
                    },
                };
                let timeout = budget.attempt_timeout();
                if timeout.is_zero() {
                    return Err(Box::new(BudgetSpent(budget.settings().budget)) as BoxError);
                }
                let started = Instant::now();
                let deadline = started + timeout;
                // When the budget, not the attempt timeout, sets the deadline, running out of
                // it is reported as the spent budget (the cause an operator can act on).
                let cut_by_budget =
                    (timeout < budget.settings().attempt_timeout).then(|| budget.settings().budget);
                let result: Result<Response<B>, BoxError> =
                    match tokio::time::timeout(timeout, inner.clone().oneshot(request)).await {
                        Ok(result) => result.map_err(Into::into),
                        Err(_) => Err(match cut_by_budget {
                            Some(total) => Box::new(BudgetSpent(total)) as BoxError,
                            None => Box::new(AttemptTimedOut(timeout)) as BoxError,
                        }),
                    };
                let bounded = |resp: Response<B>| {
                    resp.map(|body| {
                        let mut body = BoundedBody::new(body, deadline, timeout, MAX_RESPONSE_BODY);
                        body.budget = cut_by_budget;
                        body
                    })
                };
                let hint = match &result {
                    Ok(resp) if retryable_status(resp.status()) => retry_after(resp.headers()),
                    Ok(_) => return result.map(bounded),
                    Err(err) if transient_error(err.as_ref()) => None,
                    Err(_) => return result.map(bounded),
                };
                if last {
                    return result.map(bounded);
                }
                let delay = hint.unwrap_or_else(|| budget.settings().backoff(attempt, jitter()));
                if delay > budget.remaining() {
                    match &result {
                        Ok(resp) => {
                            tracing::debug!("giving up on {}: retry budget spent", resp.status())
                        }
                        Err(err) => tracing::debug!(
                            "giving up: retry budget spent: {}",
                            describe_error(err.as_ref())
                        ),
                    }
                    return result.map(bounded);
                }
                match &result {
                    Ok(resp) => tracing::debug!("{}; retrying in {delay:?}", resp.status()),
                    Err(err) => {
                        tracing::debug!("{}; retrying in {delay:?}", describe_error(err.as_ref()))
                    }
                }
                drop(result);
                tokio::time::sleep(delay).await;
                attempt = attempt.saturating_add(1);
            }
        })
    }
}
