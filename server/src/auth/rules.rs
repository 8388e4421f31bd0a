//! Who may reach what: one rule for every route, in one table. The gate in front of the router
//! looks every request up here; a method and path with no rule is answered 404, so a route
//! added without a rule cannot be reached (and its own tests say so), and the access test
//! walks this table so that a rule without a test fails the suite.

use axum::http::Method;
use reeltime::Role;

/// What a route requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Anyone: static files, health checks, the sign-in and setup forms.
    Public,
    /// The Ittybit callback: its HMAC signature is the credential (checked by the handler).
    Signed,
    /// The built-in processor's API: its key is the credential (checked by the processor).
    ProcessorKey,
    /// Media files (outputs, the sample clip): someone who may read jobs (a session or a
    /// token), the built-in processor's key, or a signed link.
    Files,
    /// A page: anonymous people are sent to sign in; too low a role is 403.
    Page(Role),
    /// A form post from a page (session only; a CSRF token for posts without JavaScript).
    Form(Role),
    /// JSON for the dashboard and for scripts: a session or a personal API token.
    Api(Role),
    /// `GET /metrics`: `REELTIME_METRICS_TOKEN` (checked by the gate), or what `Api(Admin)`
    /// accepts. An admin's token of either scope will do: scraping reads, and a read token is
    /// what Prometheus should hold.
    Metrics,
}

impl Rule {
    /// The role a request needs, if the rule asks for one.
    pub fn role(self) -> Option<Role> {
        match self {
            Rule::Page(role) | Rule::Form(role) | Rule::Api(role) => Some(role),
            Rule::Files => Some(Role::Viewer),
            Rule::Metrics => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether a personal API token is accepted.
    pub fn accepts_tokens(self) -> bool {
        matches!(self, Rule::Api(_) | Rule::Files | Rule::Metrics)
    }
}

use Role::{Admin, Operator, Viewer};
use Rule::*;

/// Every route: method (`*` for any), path (matchit syntax), rule. `HEAD` follows `GET`.
pub const RULES: &[(&str, &str, Rule)] = &[
    // The dashboard and its server functions.
    ("GET", "/", Page(Viewer)),
    ("POST", "/api/fn/list_jobs", Api(Viewer)),
    ("POST", "/api/fn/job_detail", Api(Viewer)),
    ("POST", "/api/fn/submit_job", Api(Operator)),
    ("POST", "/api/fn/whoami", Public),
    ("POST", "/api/fn/list_tokens", Api(Viewer)),
    ("POST", "/api/fn/list_users", Api(Admin)),
    ("GET", "/stats", Page(Viewer)),
    ("POST", "/api/fn/stats", Api(Viewer)),
    // Signing in and out, the first admin, one's own account.
    ("GET", "/login", Public),
    ("POST", "/login", Public),
    ("POST", "/logout", Form(Viewer)),
    ("GET", "/setup", Public),
    ("POST", "/setup", Public),
    ("GET", "/account", Page(Viewer)),
    ("POST", "/account/password", Form(Viewer)),
    ("POST", "/account/tokens", Form(Viewer)),
    ("POST", "/account/tokens/{id}/revoke", Form(Viewer)),
    ("GET", "/admin/users", Page(Admin)),
    ("POST", "/admin/users", Form(Admin)),
    ("POST", "/admin/users/{id}", Form(Admin)),
    // The JSON API and the live feed.
    ("GET", "/api/jobs", Api(Viewer)),
    ("POST", "/api/jobs", Api(Operator)),
    ("GET", "/api/jobs/{id}", Api(Viewer)),
    ("DELETE", "/api/jobs/{id}", Api(Operator)),
    ("POST", "/api/jobs/{id}/cancel", Api(Operator)),
    ("POST", "/api/jobs/{id}/retry", Api(Operator)),
    ("POST", "/api/jobs/bulk", Api(Operator)),
    ("GET", "/api/jobs/counts", Api(Viewer)),
    ("POST", "/jobs/{id}/{action}", Form(Operator)),
    ("POST", "/jobs/bulk", Form(Operator)),
    ("GET", "/api/jobs/{id}/output-link", Api(Viewer)),
    ("GET", "/api/events", Api(Viewer)),
    // Uploads: sent by operators (their own only), served like outputs.
    ("POST", "/api/uploads", Api(Operator)),
    ("GET", "/api/uploads/{id}", Api(Operator)),
    ("PUT", "/api/uploads/{id}/parts/{n}", Api(Operator)),
    ("POST", "/api/uploads/{id}/complete", Api(Operator)),
    ("GET", "/uploads/{id}/{name}", Files),
    // Machines.
    ("POST", "/api/ittybit/callback", Signed),
    ("*", "/ittybit-local/jobs", ProcessorKey),
    ("*", "/ittybit-local/jobs/{id}", ProcessorKey),
    ("*", "/ittybit-local/jobs/{id}/cancel", ProcessorKey),
    ("GET", "/ittybit-local/files/{name}", Files),
    ("GET", "/samples/{*path}", Files),
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    // The API's description holds no data: public, like the health checks.
    ("GET", "/api/openapi.json", Public),
    // Prometheus scrapes with an admin's API token (decision 011).
    ("GET", "/metrics", Metrics),
    // The browser bundle and public files.
    ("GET", "/pkg/{*path}", Public),
    ("GET", "/favicon.svg", Public),
    // Anything else a browser may ask for: signed-in people get the "not found" page.
    ("GET", "/{*rest}", Page(Viewer)),
];

/// The routes that submit a job (limited per person, `REELTIME_SUBMISSIONS_PER_MINUTE`).
pub const SUBMISSIONS: &[&str] = &["/api/jobs", "/api/fn/submit_job"];

/// The rules, ready to match.
pub struct Rules {
    router: matchit::Router<Vec<(&'static str, Rule)>>,
}

impl Rules {
    pub fn new() -> Rules {
        let mut by_path: Vec<(&'static str, Vec<(&'static str, Rule)>)> = Vec::new();
        for &(method, path, rule) in RULES {
            match by_path.iter_mut().find(|(p, _)| *p == path) {
                Some((_, methods)) => methods.push((method, rule)),
                None => by_path.push((path, vec![(method, rule)])),
            }
        }
        let mut router = matchit::Router::new();
        for (path, methods) in by_path {
            router
                .insert(path, methods)
                .unwrap_or_else(|err| panic!("access rule {path}: {err}"));
        }
        Rules { router }
    }

    /// The rule for a request, or `None` when there is none (the request is refused).
    pub fn find(&self, method: &Method, path: &str) -> Option<Rule> {
        let method = if method == Method::HEAD {
            "GET"
        } else {
            method.as_str()
        };
        let matched = self.router.at(path).ok()?;
        matched
            .value
            .iter()
            .find(|(m, _)| *m == method || *m == "*")
            .map(|(_, rule)| *rule)
    }
}

impl Default for Rules {
    fn default() -> Self {
        Rules::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_finds_its_rule_and_unknown_ones_none() {
        let rules = Rules::new();
        assert_eq!(rules.find(&Method::GET, "/"), Some(Page(Viewer)));
        assert_eq!(rules.find(&Method::HEAD, "/healthz"), Some(Public));
        assert_eq!(rules.find(&Method::POST, "/api/jobs"), Some(Api(Operator)));
        assert_eq!(rules.find(&Method::GET, "/api/jobs/abc"), Some(Api(Viewer)));
        assert_eq!(
            rules.find(&Method::DELETE, "/ittybit-local/jobs/x"),
            Some(ProcessorKey)
        );
        assert_eq!(
            rules.find(&Method::GET, "/no/such/page"),
            Some(Page(Viewer))
        );
        assert_eq!(rules.find(&Method::POST, "/no/such/form"), None);
        assert_eq!(rules.find(&Method::DELETE, "/api/jobs"), None);
    }
}
