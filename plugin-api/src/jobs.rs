//! Durable jobs a plugin declares: job kinds ([`Job`]) and the schedules that enqueue them
//! ([`Schedule`]).
//!
//! This is the declaration layer only: the host reads, validates and shows these declarations
//! (`plugin-host inspect`, the admin API), but **the queue, the workers and the execution log are
//! not built yet**, so a declared job never runs today. `docs/jobs.md` is the reference: what each
//! field means, the defaults, the backoff formula, the dedupe template language and the cron
//! dialect.
//!
//! ```
//! use plugin_api::jobs::{Backoff, Job, Schedule};
//! use plugin_api::{Function, Manifest};
//!
//! const M: Manifest = Manifest::new("mailer", "1.0.0")
//!     .functions(&[Function::new("send_email_fn"), Function::new("cleanup_fn")])
//!     .jobs(&[
//!         Job::new("send_email", "send_email_fn")
//!             .triggers(&["form:submitted", "user:*"])
//!             .max_attempts(5)
//!             .backoff(Backoff::exponential(500, 60_000))
//!             .timeout_ms(10_000)
//!             .dedupe("{event.name}:{payload./user/id}")
//!             .priority(-1),
//!         Job::new("cleanup", "cleanup_fn"),
//!     ])
//!     .schedules(&[
//!         Schedule::cron("nightly", "0 3 * * *", "Europe/Paris", "cleanup"),
//!         Schedule::every("often", 30_000, "cleanup"),
//!     ]);
//! assert_eq!(M.jobs[0].max_attempts, 5);
//! assert_eq!(M.jobs[1].max_attempts, Job::DEFAULT_MAX_ATTEMPTS);
//! ```

/// Exponential backoff with full jitter between the attempts of a job.
///
/// After attempt `n` (1 for the first) fails, the next attempt waits a delay drawn uniformly in
/// `[0, min(cap_ms, base_ms × 2^(n−1))]` milliseconds ("full jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first delay, in milliseconds (at least 1).
    pub base_ms: u64,
    /// The largest ceiling, in milliseconds (at least `base_ms`).
    pub cap_ms: u64,
}

impl Backoff {
    /// The default: base 1 second, cap 1 hour.
    pub const DEFAULT: Self = Self::exponential(1_000, 3_600_000);

    /// Exponential backoff: the delay's ceiling starts at `base_ms` and doubles after each
    /// failed attempt, up to `cap_ms`; the delay is drawn uniformly below the ceiling.
    pub const fn exponential(base_ms: u64, cap_ms: u64) -> Self {
        Self { base_ms, cap_ms }
    }
}

/// A job kind a plugin handles, declared in its [`Manifest`](crate::Manifest) with
/// [`Manifest::jobs`](crate::Manifest::jobs).
///
/// A job of this kind runs the declared function `function` of the plugin (like a route's
/// handler). It is enqueued when an event matching one of `triggers` is emitted on the bus
/// (patterns as for subscriptions: `form:submitted`, `user:*`, `audit:**`), or by a
/// [`Schedule`] naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// The kind's name: the plugin-name rule (1 to 64 characters of `a-z 0-9 - _`, starting
    /// with a letter), unique among the plugin's kinds.
    pub name: &'static str,
    /// The declared function that runs a job of this kind.
    pub function: &'static str,
    /// Bus patterns whose events enqueue a job (empty: none; schedules or operators only).
    pub triggers: &'static [&'static str],
    /// Attempts before the job is discarded (at least 1; default
    /// [`Job::DEFAULT_MAX_ATTEMPTS`]).
    pub max_attempts: u32,
    /// Delay between attempts (default [`Backoff::DEFAULT`]).
    pub backoff: Backoff,
    /// Time one attempt may take, in milliseconds (0: the host's execute timeout).
    pub timeout_ms: u64,
    /// Dedupe key template (empty: none): while a job with the same rendered key waits, no
    /// second one is enqueued. Literal text and `{event.name}`, `{event.id}`,
    /// `{payload<JSON pointer>}` placeholders; `{{` and `}}` are literal braces.
    pub dedupe: &'static str,
    /// Priority: a smaller number runs first (default 0).
    pub priority: i16,
}

impl Job {
    /// The default of [`Job::max_attempts`].
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

    /// A job kind with a name and its handler function, no trigger, and the defaults.
    pub const fn new(name: &'static str, function: &'static str) -> Self {
        Self {
            name,
            function,
            triggers: &[],
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::DEFAULT,
            timeout_ms: 0,
            dedupe: "",
            priority: 0,
        }
    }

    /// Sets the bus patterns whose events enqueue a job of this kind.
    pub const fn triggers(mut self, patterns: &'static [&'static str]) -> Self {
        self.triggers = patterns;
        self
    }

    /// Sets the number of attempts before the job is discarded.
    pub const fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the delay between attempts.
    pub const fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the time one attempt may take, in milliseconds.
    pub const fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = ms;
        self
    }

    /// Sets the dedupe key template.
    pub const fn dedupe(mut self, template: &'static str) -> Self {
        self.dedupe = template;
        self
    }

    /// Sets the priority (a smaller number runs first).
    pub const fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }
}

/// A named schedule that enqueues a job kind of the plugin, declared with
/// [`Manifest::schedules`](crate::Manifest::schedules): a cron expression in an IANA time zone,
/// or a fixed interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The schedule's name: the plugin-name rule, unique among the plugin's schedules.
    pub name: &'static str,
    /// Cron expression (empty for an interval schedule).
    pub cron: &'static str,
    /// IANA time zone the cron expression is read in, for example `Europe/Paris` or `UTC`
    /// (empty for an interval schedule).
    pub time_zone: &'static str,
    /// Interval in milliseconds (0 for a cron schedule).
    pub every_ms: u64,
    /// The job kind it enqueues (a [`Job::name`] of the same plugin).
    pub job: &'static str,
}

impl Schedule {
    /// A schedule firing at the times a cron expression names, read in an IANA time zone.
    pub const fn cron(
        name: &'static str,
        expression: &'static str,
        time_zone: &'static str,
        job: &'static str,
    ) -> Self {
        Self {
            name,
            cron: expression,
            time_zone,
            every_ms: 0,
            job,
        }
    }

    /// A schedule firing every `every_ms` milliseconds (at the multiples of the interval since
    /// the Unix epoch).
    pub const fn every(name: &'static str, every_ms: u64, job: &'static str) -> Self {
        Self {
            name,
            cron: "",
            time_zone: "",
            every_ms,
            job,
        }
    }
}
