//! Every metric the service reports, named and described in one place. The Kaleyra client
//! names its own (`kaleyra_*`); [`describe`] describes those too, so that `/-/metrics`
//! carries a help text for every series.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
pub const ROOMS_CREATED: &str = "rooms_created_total";
pub const ROOMS_DELETED: &str = "rooms_deleted_total";
pub const PROVISIONING_FAILURES: &str = "provisioning_failures_total";
pub const AWAITING_PROVISIONING: &str = "teleconsultations_awaiting_provisioning";
pub const ROOMS_MISSING_AT_START: &str = "rooms_missing_at_start";
pub const ROOMS_AWAITING_DELETION: &str = "rooms_awaiting_deletion";
pub const ROOMS_OF_UNKNOWN_ATTEMPTS: &str = "rooms_of_unknown_attempts_total";
pub const ROOM_LISTINGS: &str = "room_listings_total";
pub const BACKLOG_DUE: &str = "backlog_due";
pub const BACKLOG_OLDEST_DUE_SECONDS: &str = "backlog_oldest_due_seconds";
pub const BACKLOG_BEING_WORKED: &str = "backlog_being_worked";
pub const WORKER_CONCURRENCY: &str = "worker_concurrency_limit";
pub const EVENTS_PENDING: &str = "events_pending";
pub const EVENTS_FAILED: &str = "events_failed";
pub const EVENTS_DELIVERED: &str = "events_delivered_total";
pub const EVENTS_RETRIED: &str = "events_retried_total";
pub const EVENTS_GIVEN_UP: &str = "events_given_up_total";
pub const EVENT_DELIVERY_LATENCY: &str = "events_delivery_latency_seconds";

/// Gives every metric its help text and unit (once, at start-up).
pub fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by method and route template"
    );
    describe_counter!(ROOMS_CREATED, "Kaleyra rooms created");
    describe_counter!(ROOMS_DELETED, "Kaleyra rooms deleted (retired rooms)");
    describe_counter!(
        PROVISIONING_FAILURES,
        "Provisioning attempts that failed and were postponed"
    );
    describe_gauge!(
        AWAITING_PROVISIONING,
        "Teleconsultations with Kaleyra users or a room still to create"
    );
    describe_gauge!(
        ROOMS_MISSING_AT_START,
        "Teleconsultations whose links are due (start - IMMUTABLE_PERIOD_MS passed) without their room"
    );
    describe_gauge!(
        ROOMS_AWAITING_DELETION,
        "Retired Kaleyra rooms still to delete"
    );
    describe_counter!(
        ROOMS_OF_UNKNOWN_ATTEMPTS,
        "Kaleyra rooms carrying this installation's id but a creation attempt this database never recorded (a copied database's sign), left alone; counted once per clean-up pass that meets each"
    );
    describe_gauge!(
        BACKLOG_DUE,
        "Provisionings and room deletions whose next try is due now"
    );
    describe_gauge!(
        BACKLOG_OLDEST_DUE_SECONDS,
        Unit::Seconds,
        "How long the oldest due provisioning or room deletion has waited (0: nothing due)"
    );
    describe_gauge!(
        BACKLOG_BEING_WORKED,
        "Provisionings and room deletions leased to an instance now"
    );
    describe_gauge!(
        WORKER_CONCURRENCY,
        "Items this instance's background worker may work on at once now: PROVISIONING_CONCURRENCY, lowered while Kaleyra fails or after it refused a call for rate"
    );
    describe_counter!(
        ROOM_LISTINGS,
        "Listings of the company's Kaleyra rooms taken for clean-up (lost creation answers, orphan sweeps); one serves a whole pass"
    );
    describe_gauge!(
        EVENTS_PENDING,
        "Events to the platform stored and not yet delivered nor given up (every instance's: they share the database)"
    );
    describe_gauge!(
        EVENTS_FAILED,
        "Events given up after their last attempt, kept until redelivered (telecons events --failed lists them)"
    );
    describe_counter!(
        EVENTS_DELIVERED,
        "Events the platform accepted (2xx within the timeout)"
    );
    describe_counter!(
        EVENTS_RETRIED,
        "Failed delivery attempts that will be tried again on EVENTS_RETRY_SCHEDULE"
    );
    describe_counter!(
        EVENTS_GIVEN_UP,
        "Events given up: their last attempt failed"
    );
    describe_histogram!(
        EVENT_DELIVERY_LATENCY,
        Unit::Seconds,
        "Time from an event's creation to its delivery, retries included"
    );
    kaleyra_client::describe_metrics();
}
