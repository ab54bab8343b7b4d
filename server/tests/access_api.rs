//! Black-box tests of access control: the first admin made on the command line, signing in and out,
//! session cookies, cross-site request refusal, the sign-in rate limit, API token scopes, roles,
//! organisations kept apart, and the audit trail.
//!
//! Every test starts the real `slope` binary on a port the system picks, with a database of its own,
//! runs the real `slope admin` and `slope token` commands against that database, and talks to the
//! server over HTTP only, as a browser or a script would. The clients used here follow no redirects
//! and keep no cookies, so every test states exactly which cookie and which `Origin` it sends and sees
//! every answer as the server sent it.
//!
//! Each scenario takes a [`Site`] (a scratch folder, and a PostgreSQL database when one is given), so
//! that `access_rules_hold_on_postgres` runs the same scenarios against PostgreSQL when
//! `SLOPE_TEST_POSTGRES_URL` names a server. Seasons created here live in 2031 and later, so that they
//! never overlap the demo season, which is always current.

mod common;

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{PgDatabase, Reply, Scratch, Server, ndjson};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, ORIGIN, REFERER, RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};
use slope_service::demo::DEMO_ACCOUNTS;

const ANN: &str = "ann@example.org";
const ANN_PASSWORD: &str = "correct horse battery";
const BOB: &str = "bob@example.org";
const BOB_PASSWORD: &str = "bob's long password";
const CAROL: &str = "carol@example.org";
const CAROL_PASSWORD: &str = "carol's long password";
const EVIL: &str = "http://evil.example";
/// Sessions last fourteen days (`SESSION_DAYS` in the service); the cookie must not outlive them.
const SESSION_SECONDS: i64 = 14 * 24 * 3600;
/// The sign-in rate limit's window (`ATTEMPT_WINDOW_MINUTES`), which a refused client is told to wait.
const RETRY_AFTER_SECONDS: &str = "900";

// ---- signing in and out ------------------------------------------------------------------------

#[tokio::test]
async fn the_first_admin_signs_in_with_a_session_cookie() {
    first_admin_signs_in(&Site::sqlite("first-admin")).await;
}

async fn first_admin_signs_in(site: &Site) {
    let server = site.start(&[]);

    // The password is read from standard input; a missing or short one is refused before anything is
    // stored, so a typo in a script does not leave an account nobody can use.
    let refused = site.slope(&["admin", "create", "--email", ANN], "");
    assert!(!refused.status.success(), "an empty password must be refused: {}", show(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no password"), "{}", show(&refused));
    let short = site.slope(&["admin", "create", "--email", ANN], "short\n");
    assert!(!short.status.success(), "a short password must be refused: {}", show(&short));
    assert!(String::from_utf8_lossy(&short.stderr).contains("password"), "{}", show(&short));
    // Nothing was stored: the account does not exist.
    sign_in(&server, ANN, "short").await.expect_refused("401");

    // Addresses are names of accounts, so case and spaces around them do not matter.
    let created = site.slope_ok(&["admin", "create", "--email", " Ann@Example.ORG "], &format!("{ANN_PASSWORD}\n"));
    assert!(created.contains("ann@example.org is an admin of organisation default"), "{created}");

    let signed_in = sign_in_with(
        &server,
        &plain_client(),
        &form(ANN, ANN_PASSWORD, "", "/seasons?tab=all"),
        Some(server.base.as_str()),
        None,
    )
    .await;
    let session = signed_in.session();
    assert_eq!(signed_in.location, "/seasons?tab=all", "sign-in sends the browser on to `next`");
    assert!(session.len() >= 32 && session.chars().all(|c| c.is_ascii_alphanumeric()), "{session:?}");
    let attributes = signed_in.cookie_attributes();
    for wanted in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(attributes.iter().any(|a| a == wanted), "the cookie lacks {wanted}: {:?}", signed_in.set_cookie);
    }
    // Served over plain HTTP by default, so `Secure` would keep the browser from sending it back.
    assert!(!attributes.iter().any(|a| a.eq_ignore_ascii_case("Secure")), "{:?}", signed_in.set_cookie);
    let max_age: i64 = attributes
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap_or_else(|| panic!("the cookie has no Max-Age: {:?}", signed_in.set_cookie))
        .parse()
        .expect("Max-Age is a number");
    assert!(
        (SESSION_SECONDS - 120..=SESSION_SECONDS).contains(&max_age),
        "the cookie should last as long as the session: Max-Age={max_age}"
    );

    let me = as_user(&server, &session, Method::GET, "/api/v1/me", None).await.expect(200);
    assert_eq!(me["principal"]["kind"], "user", "{me}");
    assert_eq!(me["principal"]["role"], "admin", "{me}");
    assert_eq!(me["principal"]["email"], ANN, "{me}");
    let by_token = server.get("/api/v1/me").await.expect(200);
    assert_eq!(me["org"], by_token["org"], "the first admin belongs to the default organisation: {me} {by_token}");
    assert_eq!(by_token["principal"]["kind"], "token", "{by_token}");
    // The session opens pages too, and they say who is signed in.
    let page = as_user(&server, &session, Method::GET, "/", None).await;
    assert_eq!(page.status, 200, "{}: {}", page.what, page.text);
    assert!(page.text.contains(ANN), "the page should name the signed-in account");

    // A wrong password and an unknown account get the same answer, so the form does not tell which
    // addresses have accounts.
    let wrong = sign_in(&server, ANN, "not the password").await;
    wrong.expect_refused("401");
    let unknown = sign_in(&server, "nobody@example.org", "not the password").await;
    unknown.expect_refused("401");
    assert_eq!(wrong.location, unknown.location, "the two refusals must read the same");
    assert_eq!(wrong.status, unknown.status);

    // Where a person may be sent after signing in is checked in `sign_in_sends_people_only_to_this_server`.

    // Without a session or a token the API answers 401, and a token it does not know is refused
    // rather than treated as anonymous.
    let anonymous = send(&server, Method::GET, "/api/v1/me", None, &[]).await;
    anonymous.expect_error(401, "unauthorized");
    for bad in ["Bearer slope_0000", "Bearer not-a-token", "Basic YW5uOnB3"] {
        send(&server, Method::GET, "/api/v1/seasons", None, &[(AUTHORIZATION.as_str(), bad.to_owned())])
            .await
            .expect_error(401, "unauthorized");
    }
    // Anonymous page views go to the sign-in form, which remembers where they were going.
    let location = raw_location(&server, "/seasons/new?from=menu").await;
    assert!(location.starts_with("/login?next=/seasons/new"), "{location}");
    let login = send(&server, Method::GET, "/login", None, &[]).await;
    assert_eq!(login.status, 200, "the sign-in page is public: {}", login.text);
    assert!(login.text.contains("action=\"/auth/login\""), "the sign-in page posts to /auth/login");
}

#[tokio::test]
async fn cookies_are_marked_secure_when_configured() {
    let site = Site::sqlite("secure-cookies");
    let server = site.start(&[("SLOPE_SECURE_COOKIES", "true")]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    // Configured for HTTPS (as behind a TLS-terminating proxy), the server expects its pages' origin to
    // be `https`, as a browser would send it; a plain-HTTP origin is another site.
    let https_origin = server.base.replacen("http://", "https://", 1);
    let fields = form(ANN, ANN_PASSWORD, "", "/");
    let plain = sign_in_with(&server, &plain_client(), &fields, Some(server.base.as_str()), None).await;
    assert_eq!((plain.status, plain.set_cookie.as_deref()), (403, None), "{plain:?}");
    let signed_in = sign_in_with(&server, &plain_client(), &fields, Some(&https_origin), None).await;
    let session = signed_in.session();
    assert!(signed_in.cookie_attributes().iter().any(|a| a == "Secure"), "{:?}", signed_in.set_cookie);
    // Over TLS the cookie carries the `__Host-` prefix, which browsers only accept when it is Secure,
    // for `Path=/` and without `Domain`, so no sibling subdomain can plant one.
    let cookie = signed_in.set_cookie.clone().unwrap_or_default();
    assert!(cookie.starts_with("__Host-slope_session="), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    // The session works under that name, and the plain name is not read over TLS.
    let me = plain_client()
        .get(format!("{}/api/v1/me", server.base))
        .header(COOKIE, format!("__Host-slope_session={session}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(me.status(), 200);
    assert!(me.headers().get("strict-transport-security").is_some(), "HSTS over TLS: {:?}", me.headers());
    as_user(&server, &session, Method::GET, "/api/v1/me", None).await.expect_error(401, "unauthorized");
}

#[tokio::test]
async fn every_response_carries_security_headers() {
    let site = Site::sqlite("security-headers");
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    let session = sign_in(&server, ANN, ANN_PASSWORD).await.session();
    let get = |path: &str, host: Option<&str>| {
        let mut request = plain_client().get(format!("{}{path}", server.base)).header(COOKIE, session_cookie(&session));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    // A page: its policy names the nonce its own inline scripts carry, and allows no other inline script.
    let page = get("/", None).await.expect("an answer");
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let body = page.text().await.unwrap();
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("a page policy without a nonce: {policy}"));
    assert!(body.contains(&format!("nonce=\"{nonce}\"")), "the page's scripts carry the policy's nonce");
    assert!(!policy.contains("'unsafe-inline' 'wasm") && policy.contains("frame-ancestors 'none'"), "{policy}");
    // The not-found page is a page too, rendered with the same policy.
    let missing = get("/no-such-page", None).await.expect("an answer");
    assert_eq!(missing.status(), 404);
    let missing_policy = missing.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let missing_body = missing.text().await.unwrap();
    let missing_nonce = missing_policy.split("'nonce-").nth(1).and_then(|rest| rest.split('\'').next());
    let missing_nonce =
        missing_nonce.unwrap_or_else(|| panic!("a not-found page policy without a nonce: {missing_policy}"));
    assert!(missing_body.contains(&format!("nonce=\"{missing_nonce}\"")), "{missing_body}");
    let again = get("/", None).await.expect("an answer");
    assert_ne!(again.headers()["content-security-policy"].to_str().unwrap(), policy, "a nonce is used once");
    // Everything else: the API, files, errors and health checks.
    for path in ["/", "/api/v1/seasons", "/api/v1/nope", "/favicon.svg", "/healthz", "/login"] {
        let answer = get(path, None).await.expect("an answer");
        let h = answer.headers();
        assert!(h.get("content-security-policy").is_some(), "{path}: {h:?}");
        assert_eq!(h.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{path}");
        assert_eq!(h.get("referrer-policy").map(|v| v.to_str().unwrap()), Some("same-origin"), "{path}");
        assert_eq!(h.get("x-frame-options").map(|v| v.to_str().unwrap()), Some("DENY"), "{path}");
        // Reached as 127.0.0.1 over plain HTTP: HSTS would be ignored, and is not sent.
        assert!(h.get("strict-transport-security").is_none(), "{path}: {h:?}");
    }
    let api = get("/api/v1/seasons", None).await.expect("an answer");
    let api_policy = api.headers()["content-security-policy"].to_str().unwrap();
    assert!(!api_policy.contains("nonce-"), "{api_policy}");
    // Reached by a host name, the server assumes HTTPS (a TLS-terminating proxy in front) and says so.
    let named = get("/healthz", Some("slope.example")).await.expect("an answer");
    assert!(named.headers().get("strict-transport-security").is_some(), "{:?}", named.headers());
}

#[tokio::test]
async fn a_session_id_is_never_one_the_client_chose() {
    session_fixation(&Site::sqlite("fixation")).await;
}

async fn session_fixation(site: &Site) {
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");

    // An attacker who plants a cookie value before the victim signs in must gain nothing: the value is
    // not a session now, the sign-in replaces it, and it is not a session afterwards either.
    let planted = "0123456789abcdef".repeat(4);
    as_user(&server, &planted, Method::GET, "/api/v1/me", None).await.expect_error(401, "unauthorized");
    let signed_in = sign_in_with(
        &server,
        &plain_client(),
        &form(ANN, ANN_PASSWORD, "", "/"),
        Some(server.base.as_str()),
        Some(&planted),
    )
    .await;
    let first = signed_in.session();
    assert_ne!(first, planted, "the server must issue a new session id at sign-in");
    as_user(&server, &planted, Method::GET, "/api/v1/me", None).await.expect_error(401, "unauthorized");
    as_user(&server, &first, Method::GET, "/api/v1/me", None).await.expect(200);

    // Every sign-in gets a session of its own (two devices, or a second tab that signed in again).
    let second = sign_in(&server, ANN, ANN_PASSWORD).await.session();
    assert_ne!(second, first, "two sign-ins must not share a session id");
    assert_ne!(second, planted);
    as_user(&server, &first, Method::GET, "/api/v1/me", None).await.expect(200);
    as_user(&server, &second, Method::GET, "/api/v1/me", None).await.expect(200);
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server() {
    sign_out(&Site::sqlite("sign-out")).await;
}

async fn sign_out(site: &Site) {
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    let session = sign_in(&server, ANN, ANN_PASSWORD).await.session();
    let other_device = sign_in(&server, ANN, ANN_PASSWORD).await.session();

    // A cross-site page must not be able to sign a person out: without this server's origin the
    // request is refused and the session lives on.
    let cookie = session_cookie(&session);
    for headers in [
        vec![(COOKIE.as_str(), cookie.clone())],
        vec![(COOKIE.as_str(), cookie.clone()), (ORIGIN.as_str(), EVIL.to_owned())],
    ] {
        send(&server, Method::POST, "/auth/logout", None, &headers).await.expect_error(403, "forbidden");
    }
    as_user(&server, &session, Method::GET, "/api/v1/me", None).await.expect(200);

    let response = plain_client()
        .post(format!("{}/auth/logout", server.base))
        .header(COOKIE, &cookie)
        .header(ORIGIN, &server.base)
        .send()
        .await
        .expect("POST /auth/logout");
    assert_eq!(response.status().as_u16(), 303, "sign-out sends the browser to the sign-in page");
    assert_eq!(header(&response, LOCATION.as_str()).as_deref(), Some("/login"));
    let cleared = header(&response, SET_COOKIE.as_str()).expect("sign-out clears the cookie");
    assert!(cleared.starts_with("slope_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // The old value is worthless even to someone who kept a copy of it.
    for _ in 0..2 {
        as_user(&server, &session, Method::GET, "/api/v1/me", None).await.expect_error(401, "unauthorized");
    }
    as_user(&server, &session, Method::POST, "/api/v1/seasons", Some(&season_input("Replayed", 2031)))
        .await
        .expect_error(401, "unauthorized");
    assert!(seasons_named(&server, "Replayed").await.is_empty(), "a replayed cookie stored a season");
    // Signing out on one device leaves the others signed in.
    as_user(&server, &other_device, Method::GET, "/api/v1/me", None).await.expect(200);
    // Signing out again, or without a session, is harmless.
    let again = send(
        &server,
        Method::POST,
        "/auth/logout",
        None,
        &[(COOKIE.as_str(), cookie), (ORIGIN.as_str(), server.base.clone())],
    )
    .await;
    assert_eq!(again.status, 303, "{}", again.text);
}

#[tokio::test]
async fn sign_in_sends_people_only_to_this_server() {
    sign_in_destinations(&Site::sqlite("next")).await;
}

async fn sign_in_destinations(site: &Site) {
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    let base = reqwest::Url::parse(&server.base).expect("the base URL");
    // Browsers drop tabs and line breaks from a URL before following it (WHATWG URL standard), so
    // `/<tab>/evil.example` is followed as `//evil.example`: another site. Whatever `next` holds, the
    // browser must land on this server, and no value may keep the server from answering.
    let nexts = [
        "/seasons",
        "//evil.example/",
        "/\\evil.example/",
        "/%09/evil.example/",
        "/\t/evil.example/",
        "/\n/evil.example/",
        "/\r\n/evil.example/",
        "\t//evil.example/",
        "/seasons\u{1}",
    ];
    let mut problems = vec![];
    for next in nexts {
        let request = plain_client()
            .post(format!("{}/auth/login", server.base))
            .header(ORIGIN, &server.base)
            .form(&form(ANN, ANN_PASSWORD, "", next));
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                problems.push(format!("next={next:?}: no answer ({e})"));
                continue;
            }
        };
        let status = response.status().as_u16();
        let location = header(&response, LOCATION.as_str()).unwrap_or_default();
        if status != 303 || header(&response, SET_COOKIE.as_str()).is_none() {
            problems.push(format!("next={next:?}: answered {status} without signing in"));
            continue;
        }
        match base.join(&location) {
            Ok(target) if target.origin() == base.origin() => {}
            Ok(target) => problems.push(format!("next={next:?}: Location {location:?} takes the browser to {target}")),
            Err(e) => problems.push(format!("next={next:?}: Location {location:?} is not a URL ({e})")),
        }
    }
    assert!(problems.is_empty(), "sign-in redirects:\n{}", problems.join("\n"));
    // The server still answers after all of them.
    sign_in(&server, ANN, ANN_PASSWORD).await.session();
}

// ---- cross-site requests -----------------------------------------------------------------------

#[tokio::test]
async fn cookie_authenticated_changes_must_come_from_this_origin() {
    cross_site_requests(&Site::sqlite("csrf")).await;
}

async fn cross_site_requests(site: &Site) {
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    let session = sign_in(&server, ANN, ANN_PASSWORD).await.session();
    let cookie = (COOKIE.as_str(), session_cookie(&session));
    let port_host = server.base.trim_start_matches("http://").to_owned();

    // Whatever a cross-site page can make a browser send, the server refuses: a foreign origin, a
    // foreign referrer, an opaque origin, a look-alike host, or no origin at all.
    let foreign_sources: Vec<Vec<(&str, String)>> = vec![
        vec![(ORIGIN.as_str(), EVIL.to_owned())],
        vec![(ORIGIN.as_str(), "null".to_owned())],
        vec![(ORIGIN.as_str(), format!("http://{port_host}.evil.example"))],
        vec![(REFERER.as_str(), format!("{EVIL}/attack.html"))],
        vec![],
    ];
    for source in &foreign_sources {
        let mut headers = source.clone();
        headers.push(cookie.clone());
        let season = season_input("Cross-site season", 2031);
        send(&server, Method::POST, "/api/v1/seasons", Some(&season), &headers).await.expect_error(403, "forbidden");
        let member = json!({ "email": "mallory@evil.example", "role": "admin", "password": "mallory's password" });
        send(&server, Method::PUT, "/api/v1/members", Some(&member), &headers).await.expect_error(403, "forbidden");
        let ann_id = member_id(&server, ANN).await;
        send(&server, Method::DELETE, &format!("/api/v1/members/{ann_id}"), None, &headers)
            .await
            .expect_error(403, "forbidden");
        // Signing a browser in to someone else's account is refused the same way.
        let planted = sign_in_headers(&server, &form(ANN, ANN_PASSWORD, "", "/"), source).await;
        assert_eq!(planted.status, 403, "sign-in with {source:?}");
        assert!(planted.set_cookie.is_none(), "sign-in with {source:?} set a cookie");
    }
    assert!(seasons_named(&server, "Cross-site season").await.is_empty(), "a cross-site request stored a season");
    let members = server.get("/api/v1/members").await.expect(200);
    assert!(!members.to_string().contains("mallory"), "a cross-site request added a member: {members}");

    // The same requests from this server's pages go through, whether the browser sends `Origin` or only
    // `Referer`.
    let with_referer = vec![cookie.clone(), (REFERER.as_str(), format!("{}/seasons/new", server.base))];
    send(&server, Method::POST, "/api/v1/seasons", Some(&season_input("From our page", 2031)), &with_referer)
        .await
        .expect(201);
    as_user(&server, &session, Method::POST, "/api/v1/seasons", Some(&season_input("From our origin", 2032)))
        .await
        .expect(201);
    let member = json!({ "email": "dan@example.org", "role": "exec" });
    as_user(&server, &session, Method::PUT, "/api/v1/members", Some(&member)).await.expect(202);

    // Reading changes nothing, so a foreign origin may read (SameSite keeps the cookie off most such
    // requests anyway, and CORS keeps the answer from the foreign page).
    let read = vec![cookie.clone(), (ORIGIN.as_str(), EVIL.to_owned())];
    let seasons = send(&server, Method::GET, "/api/v1/seasons", None, &read).await.expect(200);
    assert_eq!(seasons.as_array().map(Vec::len), Some(2), "{seasons}");

    // Scripts with a token are not browsers: they need no origin, and a stray one does not matter.
    server.post("/api/v1/seasons", &season_input("From a script", 2033)).await.expect(201);
    let scripted =
        vec![(AUTHORIZATION.as_str(), format!("Bearer {}", server.token)), (ORIGIN.as_str(), EVIL.to_owned())];
    send(&server, Method::POST, "/api/v1/seasons", Some(&season_input("From a script too", 2034)), &scripted)
        .await
        .expect(201);
}

// ---- the sign-in rate limit --------------------------------------------------------------------

#[tokio::test]
async fn repeated_failed_sign_ins_are_refused_for_a_while() {
    sign_in_rate_limit(&Site::sqlite("rate-limit")).await;
}

async fn sign_in_rate_limit(site: &Site) {
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    site.add_member(BOB, "leader", &[], Some(BOB_PASSWORD));
    site.add_member(CAROL, "exec", &[], Some(CAROL_PASSWORD));
    // Attempts are counted per account and per client address; clients bound to other loopback
    // addresses stand for other people's machines.
    let home = client_from("127.0.0.1");
    let elsewhere = client_from("127.0.0.2");
    let guesser = client_from("127.0.0.3");

    for attempt in 1..=5 {
        let answer = sign_in_from(&server, &home, ANN, &format!("guess number {attempt}")).await;
        answer.expect_refused("401");
    }
    // The sixth attempt is refused whatever the password, so guessing cannot go on, and the client is
    // told how long to wait.
    for password in [ANN_PASSWORD, "guess number 6"] {
        let refused = sign_in_from(&server, &home, ANN, password).await;
        refused.expect_refused("429");
        assert_eq!(refused.retry_after.as_deref(), Some(RETRY_AFTER_SECONDS), "{refused:?}");
    }
    // The account stays closed from every address, while other accounts sign in from the same one.
    sign_in_from(&server, &elsewhere, ANN, ANN_PASSWORD).await.expect_refused("429");
    sign_in_from(&server, &home, BOB, BOB_PASSWORD).await.session();

    // An address that fails for many accounts is refused for all of them at its twentieth failure,
    // which stops guessing one password across many accounts. Unknown accounts count too.
    for n in 1..=19 {
        sign_in_from(&server, &guesser, &format!("user{n}@example.org"), "password123!").await.expect_refused("401");
    }
    sign_in_from(&server, &guesser, CAROL, CAROL_PASSWORD).await.session();
    sign_in_from(&server, &guesser, "user20@example.org", "password123!").await.expect_refused("401");
    let refused = sign_in_from(&server, &guesser, CAROL, CAROL_PASSWORD).await;
    refused.expect_refused("429");
    assert_eq!(refused.retry_after.as_deref(), Some(RETRY_AFTER_SECONDS), "{refused:?}");
    // Other addresses are not affected by the guesser's failures.
    sign_in_from(&server, &elsewhere, CAROL, CAROL_PASSWORD).await.session();
}

#[tokio::test]
async fn concurrent_guesses_do_not_get_past_the_limit() {
    concurrent_guesses(&Site::sqlite("concurrent-guesses")).await;
}

async fn concurrent_guesses(site: &Site) {
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    // A guesser does not wait for one answer before sending the next guess. However many arrive at
    // once, no more than five may be checked against the password within the window.
    let mut attempts = tokio::task::JoinSet::new();
    for n in 0..15 {
        let request = plain_client()
            .post(format!("{}/auth/login", server.base))
            .header(ORIGIN, &server.base)
            .form(&form(ANN, &format!("concurrent guess {n}"), "", "/"));
        attempts.spawn(read_sign_in(request, format!("concurrent guess {n}")));
    }
    let mut checked = 0;
    while let Some(answer) = attempts.join_next().await {
        let answer = answer.expect("a sign-in task");
        assert!(answer.set_cookie.is_none(), "a wrong password signed in: {answer:?}");
        match answer.outcome.as_deref() {
            Some("401") => checked += 1,
            Some("429") => {}
            other => panic!("unexpected sign-in outcome {other:?}: {answer:?}"),
        }
    }
    assert!(checked <= 5, "{checked} of 15 concurrent guesses were checked against the password; the limit is 5");
    sign_in(&server, ANN, ANN_PASSWORD).await.expect_refused("429");
}

#[tokio::test]
async fn an_attackers_guesses_do_not_lock_the_owner_out() {
    owner_not_locked_out(&Site::sqlite("owner-not-locked-out")).await;
}

async fn owner_not_locked_out(site: &Site) {
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    let home = client_from("127.0.0.1");
    let new_machine = client_from("127.0.0.2");
    let attacker = client_from("127.0.0.3");
    // Ann signs in from her usual machine, which makes its address one her account is known to use.
    sign_in_from(&server, &home, ANN, ANN_PASSWORD).await.session();
    // An attacker guesses five times, then keeps knocking on the closed account.
    for n in 1..=5 {
        sign_in_from(&server, &attacker, ANN, &format!("guess number {n}")).await.expect_refused("401");
    }
    for n in 6..=12 {
        sign_in_from(&server, &attacker, ANN, &format!("guess number {n}")).await.expect_refused("429");
    }
    // Ann still signs in from her machine; a machine the account never used waits, as the attacker does.
    sign_in_from(&server, &home, ANN, ANN_PASSWORD).await.session();
    sign_in_from(&server, &new_machine, ANN, ANN_PASSWORD).await.expect_refused("429");
    // The seven refused attempts were not counted: the attacker's address has five failures, so fifteen
    // more (the address limit is twenty) are still checked. Had refusals counted, knocking would keep
    // any account closed for as long as it went on.
    for n in 1..=15 {
        sign_in_from(&server, &attacker, &format!("user{n}@example.org"), "password123!").await.expect_refused("401");
    }
    sign_in_from(&server, &attacker, "user16@example.org", "password123!").await.expect_refused("429");
}

// ---- API tokens ----------------------------------------------------------------------------------

#[tokio::test]
async fn token_scopes_limit_what_a_script_may_do() {
    token_scopes(&Site::sqlite("tokens")).await;
}

async fn token_scopes(site: &Site) {
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    let admin = sign_in(&server, ANN, ANN_PASSWORD).await.session();
    let reader = site.create_token("dashboard", "read", "default");
    let writer = site.create_token("planner", "write", "default");
    let pipeline = site.create_token("pipeline", "ingest", "default");
    let retired = site.create_token("retired script", "read,write", "default");
    let unused = site.create_token("spare", "read", "default");
    // Revoking is as good as deleting for the token's holder, and takes effect at once.
    with_token(&server, &retired.secret, Method::GET, "/api/v1/seasons", None).await.expect(200);
    let revoked = site.slope_ok(&["token", "revoke", &retired.id.to_string()], "");
    assert!(revoked.contains("revoked"), "{revoked}");

    let season = season_input("Planned by a script", 2031);
    let batch = ndjson(&[json!({
        "event_id": "e1",
        "ts": "2026-03-02T09:00:00Z",
        "user_id": "u1",
        "variant": "a",
        "suggested_chars": 100,
        "accepted_chars": 50,
    })]);

    // `read` reads and changes nothing.
    with_token(&server, &reader.secret, Method::GET, "/api/v1/seasons", None).await.expect(200);
    with_token(&server, &reader.secret, Method::POST, "/api/v1/seasons", Some(&season))
        .await
        .expect_error(403, "forbidden");
    ingest_with(&server, &reader.secret, batch.clone()).await.expect_error(403, "forbidden");

    // `ingest` sends events and reads nothing, so a leaked pipeline token reveals no plan.
    with_token(&server, &pipeline.secret, Method::GET, "/api/v1/seasons", None).await.expect_error(403, "forbidden");
    with_token(&server, &pipeline.secret, Method::GET, "/api/v1/loops", None).await.expect_error(403, "forbidden");
    with_token(&server, &pipeline.secret, Method::POST, "/api/v1/seasons", Some(&season))
        .await
        .expect_error(403, "forbidden");
    let ack = ingest_with(&server, &pipeline.secret, batch.clone()).await.expect(201);
    assert_eq!(ack["stored"], 1, "{ack}");

    // `write` changes plans and reads them, but sends no events.
    let created = with_token(&server, &writer.secret, Method::POST, "/api/v1/seasons", Some(&season)).await.expect(201);
    let path = format!("/api/v1/seasons/{}", created["id"]);
    with_token(&server, &writer.secret, Method::GET, &path, None).await.expect(200);
    ingest_with(&server, &writer.secret, batch).await.expect_error(403, "forbidden");

    // Revoked and unknown tokens are refused outright.
    with_token(&server, &retired.secret, Method::GET, "/api/v1/seasons", None).await.expect_error(401, "unauthorized");
    let made_up = format!("slope_{}", "0".repeat(64));
    with_token(&server, &made_up, Method::GET, "/api/v1/seasons", None).await.expect_error(401, "unauthorized");

    // No token manages access, whatever its scopes, so a script cannot mint a token that outlives its
    // own revocation, nor make itself a member.
    for token in [&writer.secret, &reader.secret, &server.token] {
        let member = json!({ "email": "script@example.org", "role": "admin", "password": "a long password" });
        with_token(&server, token, Method::PUT, "/api/v1/members", Some(&member)).await.expect_error(403, "forbidden");
        with_token(&server, token, Method::GET, "/api/v1/tokens", None).await.expect_error(403, "forbidden");
        let new_token = json!({ "name": "minted", "scopes": ["read"] });
        with_token(&server, token, Method::POST, "/api/v1/tokens", Some(&new_token))
            .await
            .expect_error(403, "forbidden");
        let revoke = format!("/api/v1/tokens/{}/revoke", reader.id);
        with_token(&server, token, Method::POST, &revoke, Some(&json!({}))).await.expect_error(403, "forbidden");
        let ann_id = member_id(&server, ANN).await;
        with_token(&server, token, Method::DELETE, &format!("/api/v1/members/{ann_id}"), None)
            .await
            .expect_error(403, "forbidden");
        let unit = json!({ "name": "Scripted unit", "parent": "" });
        with_token(&server, token, Method::PUT, "/api/v1/units", Some(&unit)).await.expect_error(403, "forbidden");
    }
    with_token(&server, &reader.secret, Method::GET, "/api/v1/tokens", None).await.expect_error(403, "forbidden");

    // An admin lists the tokens: when each was last used and whether it is revoked, never a secret.
    let listing = as_user(&server, &admin, Method::GET, "/api/v1/tokens", None).await;
    for secret in [&reader.secret, &writer.secret, &pipeline.secret, &retired.secret, &unused.secret, &server.token] {
        assert!(!listing.text.contains(secret.as_str()), "the token list shows a secret: {}", listing.text);
    }
    let tokens = listing.expect(200);
    let find = |name: &str| {
        tokens
            .as_array()
            .and_then(|all| all.iter().find(|t| t["name"] == name))
            .unwrap_or_else(|| panic!("no token named {name:?} in {tokens}"))
            .clone()
    };
    for token in tokens.as_array().expect("a list") {
        let mut keys: Vec<&str> = token.as_object().expect("an object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["created_at", "created_by", "id", "last_used_at", "name", "prefix", "revoked_at", "scopes"],
            "a listed token carries exactly these fields: {token}"
        );
    }
    for (name, secret) in [("dashboard", &reader.secret), ("pipeline", &pipeline.secret), ("planner", &writer.secret)] {
        let token = find(name);
        assert!(token["last_used_at"].is_string(), "{name} was used: {token}");
        assert_eq!(token["revoked_at"], Value::Null, "{token}");
        let prefix = token["prefix"].as_str().expect("a prefix");
        assert!(secret.starts_with(prefix) && prefix.len() < secret.len() / 2, "{prefix} of {name}");
        assert_eq!(token["created_by"], "system:cli", "{token}");
    }
    assert_eq!(find("dashboard")["scopes"], json!(["read"]));
    assert_eq!(find("pipeline")["scopes"], json!(["ingest"]));
    assert_eq!(find("spare")["last_used_at"], Value::Null, "the spare token was never used");
    assert!(find("retired script")["revoked_at"].is_string(), "the retired token is revoked");
    // The command line lists the same, without secrets either.
    let listed = site.slope_ok(&["token", "list"], "");
    assert!(listed.contains("never used") && listed.contains("revoked") && listed.contains("last used"), "{listed}");
    assert!(!listed.contains(&reader.secret) && !listed.contains(&unused.secret), "{listed}");

    // An admin makes a token over the API: its secret is in that answer and nowhere after.
    let bad = json!({ "name": " ", "scopes": ["admin"] });
    as_user(&server, &admin, Method::POST, "/api/v1/tokens", Some(&bad)).await.expect_invalid(&["name", "scopes"]);
    let made = as_user(
        &server,
        &admin,
        Method::POST,
        "/api/v1/tokens",
        Some(&json!({ "name": "exporter", "scopes": ["read"] })),
    )
    .await
    .expect(201);
    let secret = made["secret"].as_str().expect("the secret is shown once").to_owned();
    assert!(secret.starts_with("slope_"), "{made}");
    assert_eq!(made["token"]["created_by"], ANN, "{made}");
    with_token(&server, &secret, Method::GET, "/api/v1/seasons", None).await.expect(200);
    let listing = as_user(&server, &admin, Method::GET, "/api/v1/tokens", None).await;
    assert!(!listing.text.contains(&secret), "the token list shows a secret: {}", listing.text);
    let revoke = format!("/api/v1/tokens/{}/revoke", made["token"]["id"]);
    let revoked = as_user(&server, &admin, Method::POST, &revoke, Some(&json!({}))).await.expect(200);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    with_token(&server, &secret, Method::GET, "/api/v1/seasons", None).await.expect_error(401, "unauthorized");
    as_user(&server, &admin, Method::POST, "/api/v1/tokens/987654/revoke", Some(&json!({})))
        .await
        .expect_error(404, "not_found");
}

// ---- roles ---------------------------------------------------------------------------------------

#[tokio::test]
async fn roles_decide_what_a_signed_in_member_may_change() {
    roles(&Site::sqlite("roles")).await;
}

async fn roles(site: &Site) {
    let server = site.start(&[("SLOPE_DEMO", "true")]);
    let account = |role: &str| {
        DEMO_ACCOUNTS
            .iter()
            .find(|a| a.role.as_str() == role)
            .unwrap_or_else(|| panic!("the demo has no {role} account"))
    };
    let mut sessions = std::collections::HashMap::new();
    for role in ["admin", "leader", "squad-member", "exec"] {
        let demo = account(role);
        let session = sign_in(&server, demo.email, demo.password).await.session();
        let me = as_user(&server, &session, Method::GET, "/api/v1/me", None).await.expect(200);
        assert_eq!(me["principal"]["role"], role, "{me}");
        sessions.insert(role, session);
    }
    let (admin, leader, member, exec) =
        (&sessions["admin"], &sessions["leader"], &sessions["squad-member"], &sessions["exec"]);

    // The demo's squad member works in the Agents squad; find one goal of theirs and one of another
    // squad on the board.
    let squads = server.get("/api/v1/squads").await.expect(200);
    let agents = squads
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "Agents"))
        .unwrap_or_else(|| panic!("no Agents squad: {squads}"))["id"]
        .clone();
    let me = as_user(&server, member, Method::GET, "/api/v1/me", None).await.expect(200);
    assert_eq!(me["principal"]["squads"], json!([agents]), "{me}");
    let board = server.get("/api/v1/squad-board").await.expect(200);
    let goal_of = |own: bool| -> Value {
        board["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .filter(|c| (c["squad"]["id"] == agents) == own)
            .flat_map(|c| c["goals"].as_array().cloned().unwrap_or_default())
            .map(|g| g["goal"].clone())
            .next()
            .unwrap_or_else(|| panic!("no goal (own squad: {own}) on the board: {board}"))
    };
    let (own_goal, other_goal) = (goal_of(true), goal_of(false));

    // The exec reads everything and changes nothing.
    let seasons = as_user(&server, exec, Method::GET, "/api/v1/seasons", None).await.expect(200);
    assert!(!seasons.as_array().expect("a list").is_empty(), "the demo has a season: {seasons}");
    let season_id = seasons[0]["season"]["id"].clone();
    as_user(&server, exec, Method::GET, &format!("/api/v1/seasons/{season_id}/tree"), None).await.expect(200);
    as_user(&server, exec, Method::POST, "/api/v1/seasons", Some(&season_input("Exec season", 2031)))
        .await
        .expect_error(403, "forbidden");
    as_user(&server, exec, Method::PUT, &goal_path(&own_goal), Some(&goal_edit(&own_goal, "Exec's title")))
        .await
        .expect_error(403, "forbidden");

    // The squad member changes their own squad's goals and nothing else.
    let edited =
        as_user(&server, member, Method::PUT, &goal_path(&own_goal), Some(&goal_edit(&own_goal, "Agents' new title")))
            .await
            .expect(200);
    assert_eq!(edited["title"], "Agents' new title", "{edited}");
    let own_id = own_goal["id"].as_i64().expect("an id");
    let trail = audit_of(&server, "squad_goal", own_id).await;
    assert_eq!(trail[0]["actor"], account("squad-member").email, "the edit is recorded under the member: {}", trail[0]);
    // The demo's goals are milestones, checked in as done or not.
    let check_in = json!({ "done": true, "author": "Sam" });
    let check_in_path = |goal: &Value| format!("{}/check-ins", goal_path(goal));
    as_user(&server, member, Method::POST, &check_in_path(&own_goal), Some(&check_in)).await.expect(201);
    as_user(&server, member, Method::PUT, &goal_path(&other_goal), Some(&goal_edit(&other_goal, "Taken over")))
        .await
        .expect_error(403, "forbidden");
    as_user(&server, member, Method::POST, &check_in_path(&other_goal), Some(&check_in))
        .await
        .expect_error(403, "forbidden");
    let untouched = server.get(&goal_path(&other_goal)).await.expect(200);
    assert_eq!(untouched["goal"]["title"], other_goal["title"], "a refused edit changed the goal");
    assert_eq!(untouched["goal"]["version"], other_goal["version"]);
    as_user(&server, member, Method::POST, "/api/v1/seasons", Some(&season_input("Member season", 2031)))
        .await
        .expect_error(403, "forbidden");
    let objective = json!({ "quarter": "2031-Q1", "title": "Member objective", "commitment": "committed" });
    as_user(&server, member, Method::POST, &format!("/api/v1/seasons/{season_id}/objectives"), Some(&objective))
        .await
        .expect_error(403, "forbidden");

    // The leader plans: seasons, objectives and any squad's goals; but does not manage access.
    let season = as_user(&server, leader, Method::POST, "/api/v1/seasons", Some(&season_input("Leader season", 2031)))
        .await
        .expect(201);
    let objective = json!({ "quarter": "2031-Q1", "title": "Leader objective", "commitment": "committed" });
    let path = format!("/api/v1/seasons/{}/objectives", season["id"]);
    let created = as_user(&server, leader, Method::POST, &path, Some(&objective)).await.expect(201);
    assert_eq!(created["title"], "Leader objective");
    let other_now = server.get(&goal_path(&other_goal)).await.expect(200)["goal"].clone();
    as_user(&server, leader, Method::PUT, &goal_path(&other_now), Some(&goal_edit(&other_now, "Leader's title")))
        .await
        .expect(200);
    let newcomer = json!({ "email": "newcomer@example.org", "role": "exec", "password": "a long password" });
    for session in [leader, member, exec] {
        as_user(&server, session, Method::PUT, "/api/v1/members", Some(&newcomer)).await.expect_error(403, "forbidden");
        as_user(&server, session, Method::GET, "/api/v1/tokens", None).await.expect_error(403, "forbidden");
        let ann_id = member_id(&server, account("admin").email).await;
        as_user(&server, session, Method::DELETE, &format!("/api/v1/members/{ann_id}"), None)
            .await
            .expect_error(403, "forbidden");
    }

    // The admin invites a member, who joins by accepting with a password of their own; the audit trail
    // says who gave the role, with the member before and after.
    let input = json!({ "email": "Nia@Example.org", "name": "Nia", "role": "leader" });
    let (invited, secret) = invite(&server, admin, &input).await;
    assert_eq!(
        (&invited["invitation"]["email"], &invited["invitation"]["role"]),
        (&json!("nia@example.org"), &json!("leader"))
    );
    let too_short = accept(&server, &secret, "Nia", "short").await;
    assert_eq!(too_short.outcome.as_deref(), Some("422"), "a new account needs a good password: {too_short:?}");
    accept(&server, &secret, "Nia", "nia's long password").await.session();
    let added = server.get("/api/v1/members").await.expect(200);
    let added = added.as_array().and_then(|all| all.iter().find(|m| m["email"] == "nia@example.org").cloned());
    let added = added.expect("Nia is a member once she accepted");
    assert_eq!((&added["email"], &added["role"]), (&json!("nia@example.org"), &json!("leader")), "{added}");
    assert_eq!(added["name"], "Nia", "{added}");
    let again = accept(&server, &secret, "Nia", "nia's long password").await;
    assert_eq!(again.outcome.as_deref(), Some("404"), "an invitation is accepted once: {again:?}");
    let nia_id = added["user_id"].as_i64().expect("a user id");
    let trail = audit_of(&server, "membership", nia_id).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0]["actor"], account("admin").email, "{}", trail[0]);
    assert_eq!(trail[0]["action"], "create", "{}", trail[0]);
    assert_eq!(trail[0]["before"], Value::Null, "{}", trail[0]);
    assert_eq!(trail[0]["after"]["role"], "leader", "{}", trail[0]);
    assert_eq!(trail[0]["after"]["email"], "nia@example.org", "{}", trail[0]);
    assert!(!trail[0].to_string().contains("nia's long password"), "the audit trail holds a password: {}", trail[0]);
    assert!(!trail[0].to_string().contains("argon2"), "the audit trail holds a password hash: {}", trail[0]);

    // A change of role applies to the sessions the member already has, at once.
    let nia = sign_in(&server, "nia@example.org", "nia's long password").await.session();
    as_user(&server, &nia, Method::POST, "/api/v1/seasons", Some(&season_input("Nia's season", 2032)))
        .await
        .expect(201);
    let demoted = json!({ "email": "nia@example.org", "role": "exec" });
    let changed = as_user(&server, admin, Method::PUT, "/api/v1/members", Some(&demoted)).await.expect(200);
    assert_eq!(changed["role"], "exec", "{changed}");
    as_user(&server, &nia, Method::POST, "/api/v1/seasons", Some(&season_input("Nia's second season", 2033)))
        .await
        .expect_error(403, "forbidden");
    let me = as_user(&server, &nia, Method::GET, "/api/v1/me", None).await.expect(200);
    assert_eq!(me["principal"]["role"], "exec", "{me}");
    let trail = audit_of(&server, "membership", nia_id).await;
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!((&trail[0]["action"], &trail[0]["actor"]), (&json!("update"), &json!(account("admin").email)));
    assert_eq!((&trail[0]["before"]["role"], &trail[0]["after"]["role"]), (&json!("leader"), &json!("exec")));

    // Bad member input is refused with the field named, and nobody may remove themselves.
    let unknown_squad = json!({ "email": "sq@example.org", "role": "squad-member", "squads": [987654] });
    as_user(&server, admin, Method::PUT, "/api/v1/members", Some(&unknown_squad)).await.expect_invalid(&["squads"]);
    // The invitee chooses the password, never the admin.
    let chosen = json!({ "email": "nopass@example.org", "role": "exec", "password": "the admin's choice" });
    as_user(&server, admin, Method::PUT, "/api/v1/members", Some(&chosen)).await.expect_invalid(&["password"]);
    let admin_id = member_id(&server, account("admin").email).await;
    as_user(&server, admin, Method::DELETE, &format!("/api/v1/members/{admin_id}"), None)
        .await
        .expect_invalid(&["user"]);

    // Removing a member ends their sessions in the organisation and is recorded.
    let removed = send(
        &server,
        Method::DELETE,
        &format!("/api/v1/members/{nia_id}"),
        None,
        &[(COOKIE.as_str(), session_cookie(admin)), (ORIGIN.as_str(), server.base.clone())],
    )
    .await;
    assert_eq!(removed.status, 204, "{}: {}", removed.what, removed.text);
    as_user(&server, &nia, Method::GET, "/api/v1/me", None).await.expect_error(401, "unauthorized");
    sign_in(&server, "nia@example.org", "nia's long password").await.expect_refused("401");
    let trail = audit_of(&server, "membership", nia_id).await;
    assert_eq!(trail.len(), 3, "{trail:?}");
    assert_eq!(trail[0]["action"], "delete", "{}", trail[0]);
    assert_eq!(trail[0]["after"], Value::Null, "{}", trail[0]);
    as_user(&server, admin, Method::DELETE, &format!("/api/v1/members/{nia_id}"), None)
        .await
        .expect_error(404, "not_found");
}

// ---- organisations -------------------------------------------------------------------------------

#[tokio::test]
async fn organisations_see_only_their_own_data() {
    tenancy(&Site::sqlite("tenancy")).await;
}

async fn tenancy(site: &Site) {
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    let created = site.slope_ok(
        &["admin", "create", "--email", BOB, "--org", "globex", "--org-name", "Globex"],
        &format!("{BOB_PASSWORD}\n"),
    );
    assert!(created.contains("organisation globex"), "{created}");

    // The default organisation's plan, made by its full-scope token.
    let season = server.post("/api/v1/seasons", &season_input("Default's season", 2031)).await.expect(201);
    let season_id = season["id"].as_i64().expect("an id");
    let objective = server
        .post(
            &format!("/api/v1/seasons/{season_id}/objectives"),
            &json!({ "quarter": "2031-Q1", "title": "Default's objective", "commitment": "committed" }),
        )
        .await
        .expect(201);
    let squad = server
        .post("/api/v1/squads", &json!({ "name": "Default squad", "unit": "Core", "capacity": 4 }))
        .await
        .expect(201);
    let ann = sign_in(&server, ANN, ANN_PASSWORD).await.session();
    let ann_id = member_id(&server, ANN).await;

    let bob = sign_in(&server, BOB, BOB_PASSWORD).await.session();
    let me = as_user(&server, &bob, Method::GET, "/api/v1/me", None).await.expect(200);
    let default_me = as_user(&server, &ann, Method::GET, "/api/v1/me", None).await.expect(200);
    assert_ne!(me["org"], default_me["org"], "globex is an organisation of its own: {me}");
    assert_eq!(me["principal"]["role"], "admin", "{me}");
    let globex_org = me["org"].clone();

    // Globex's admin sees none of the default organisation's data, and its ids answer 404 as if they
    // did not exist, so nothing tells Globex which ids are taken.
    let seasons = as_user(&server, &bob, Method::GET, "/api/v1/seasons", None).await.expect(200);
    assert_eq!(seasons, json!([]), "globex has no season: {seasons}");
    for path in [
        format!("/api/v1/seasons/{season_id}"),
        format!("/api/v1/seasons/{season_id}/tree"),
        format!("/api/v1/objectives/{}", objective["id"]),
        format!("/api/v1/squads/{}", squad["id"]),
    ] {
        as_user(&server, &bob, Method::GET, &path, None).await.expect_error(404, "not_found");
    }
    let mut edit = season_input("Taken over", 2031);
    edit["version"] = season["version"].clone();
    as_user(&server, &bob, Method::PUT, &format!("/api/v1/seasons/{season_id}"), Some(&edit))
        .await
        .expect_error(404, "not_found");
    let intruding = json!({ "quarter": "2031-Q1", "title": "Intruder", "commitment": "committed" });
    as_user(&server, &bob, Method::POST, &format!("/api/v1/seasons/{season_id}/objectives"), Some(&intruding))
        .await
        .expect_error(404, "not_found");
    let squads = as_user(&server, &bob, Method::GET, "/api/v1/squads", None).await.expect(200);
    assert_eq!(squads, json!([]), "{squads}");
    let members = as_user(&server, &bob, Method::GET, "/api/v1/members", None).await.expect(200);
    let emails: Vec<&str> = members.as_array().expect("a list").iter().filter_map(|m| m["email"].as_str()).collect();
    assert_eq!(emails, [BOB], "globex lists only its own members");
    let tokens = as_user(&server, &bob, Method::GET, "/api/v1/tokens", None).await.expect(200);
    assert_eq!(tokens, json!([]), "globex lists none of the default organisation's tokens: {tokens}");
    let trail = as_user(&server, &bob, Method::GET, "/api/v1/audit", None).await.expect(200);
    assert!(!trail.to_string().contains("Default's season"), "globex reads the default audit trail: {trail}");
    let trail = as_user(&server, &bob, Method::GET, &format!("/api/v1/audit?entity=season&id={season_id}"), None)
        .await
        .expect(200);
    assert_eq!(trail, json!([]), "{trail}");

    // Nor can Globex's admin reach the default organisation's access: its tokens, its members, its squads.
    let default_token_id = first_token_id(&server, &ann).await;
    as_user(&server, &bob, Method::POST, &format!("/api/v1/tokens/{default_token_id}/revoke"), Some(&json!({})))
        .await
        .expect_error(404, "not_found");
    server.get("/api/v1/seasons").await.expect(200);
    as_user(&server, &bob, Method::DELETE, &format!("/api/v1/members/{ann_id}"), None)
        .await
        .expect_error(404, "not_found");
    as_user(&server, &ann, Method::GET, "/api/v1/me", None).await.expect(200);
    let squad_member = json!({ "email": "eve@example.org", "role": "squad-member", "squads": [squad["id"]] });
    as_user(&server, &bob, Method::PUT, "/api/v1/members", Some(&squad_member)).await.expect_invalid(&["squads"]);

    // Seasons of different organisations may overlap: the rule is per organisation.
    let globex_season =
        as_user(&server, &bob, Method::POST, "/api/v1/seasons", Some(&season_input("Globex's season", 2031)))
            .await
            .expect(201);
    let globex_season_id = globex_season["id"].as_i64().expect("an id");
    server.get(&format!("/api/v1/seasons/{globex_season_id}")).await.expect_error(404, "not_found");
    as_user(&server, &ann, Method::GET, &format!("/api/v1/seasons/{globex_season_id}"), None)
        .await
        .expect_error(404, "not_found");

    // A token belongs to the organisation it was made in.
    let globex_token = site.create_token("globex reader", "read,write", "globex");
    let listed = with_token(&server, &globex_token.secret, Method::GET, "/api/v1/seasons", None).await.expect(200);
    let names: Vec<&str> =
        listed.as_array().expect("a list").iter().filter_map(|s| s["season"]["name"].as_str()).collect();
    assert_eq!(names, ["Globex's season"], "{listed}");
    with_token(&server, &globex_token.secret, Method::GET, &format!("/api/v1/seasons/{season_id}"), None)
        .await
        .expect_error(404, "not_found");
    let mut edit = season_input("Renamed across organisations", 2031);
    edit["version"] = season["version"].clone();
    with_token(&server, &globex_token.secret, Method::PUT, &format!("/api/v1/seasons/{season_id}"), Some(&edit))
        .await
        .expect_error(404, "not_found");
    let default_names: Vec<String> = server
        .get("/api/v1/seasons")
        .await
        .expect(200)
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["season"]["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(default_names, ["Default's season"], "the default organisation's seasons are unchanged");
    let token_missing = site.slope(&["token", "create", "--name", "x", "--scopes", "read", "--org", "initech"], "");
    assert!(!token_missing.status.success(), "an unknown organisation must be refused: {}", show(&token_missing));

    // An account may belong to both organisations, with a role in each; `org` picks one at sign-in.
    // Globex's admin can only invite Ann, and learns nothing of her account in doing so: the answer is
    // the one an address without an account gets. She joins when she accepts with her own password.
    let joined = json!({ "email": ANN, "role": "exec" });
    let (invited, secret) = invite(&server, &bob, &joined).await;
    let (stranger, _) = invite(&server, &bob, &json!({ "email": "nobody@nowhere.example", "role": "exec" })).await;
    let keys = |v: &Value| -> Vec<String> {
        let mut keys: Vec<String> =
            v["invitation"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        keys.extend(v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default());
        keys
    };
    assert_eq!(keys(&invited), keys(&stranger), "an invitation's answer says nothing about the account: {invited}");
    assert!(!invited.to_string().contains("Ann") && !invited.to_string().contains("user_id"), "{invited}");
    sign_in_org(&server, ANN, ANN_PASSWORD, "globex").await.expect_refused("401");
    let members = as_user(&server, &bob, Method::GET, "/api/v1/members", None).await.expect(200);
    assert!(!members.to_string().contains(ANN), "an invitation does not make a member: {members}");
    let guessed = accept(&server, &secret, "", "not ann's password").await;
    assert_eq!(guessed.outcome.as_deref(), Some("401"), "the holder must know the account's password: {guessed:?}");
    accept(&server, &secret, "", ANN_PASSWORD).await.session();
    let members = as_user(&server, &bob, Method::GET, "/api/v1/members", None).await.expect(200);
    let added = members.as_array().and_then(|all| all.iter().find(|m| m["email"] == ANN).cloned()).expect("Ann joined");
    assert_eq!(added["role"], "exec", "an existing account joins without a new password: {added}");
    let trail = audit_of_as(&server, &bob, "membership", added["user_id"].as_i64().expect("an id")).await;
    assert_eq!(trail[0]["actor"], BOB, "the role is recorded as given by the inviter: {}", trail[0]);
    let ann_at_globex = sign_in_org(&server, ANN, ANN_PASSWORD, "globex").await.session();
    let me = as_user(&server, &ann_at_globex, Method::GET, "/api/v1/me", None).await.expect(200);
    assert_eq!((&me["org"], &me["principal"]["role"]), (&globex_org, &json!("exec")), "{me}");
    let seen = as_user(&server, &ann_at_globex, Method::GET, "/api/v1/seasons", None).await.expect(200);
    assert_eq!(seen.as_array().map(Vec::len), Some(1), "{seen}");
    as_user(&server, &ann_at_globex, Method::GET, &format!("/api/v1/seasons/{season_id}"), None)
        .await
        .expect_error(404, "not_found");
    as_user(&server, &ann_at_globex, Method::POST, "/api/v1/seasons", Some(&season_input("Exec at Globex", 2032)))
        .await
        .expect_error(403, "forbidden");
    // Without `org`, the first organisation the account joined; with one it is not in, a refusal.
    let first = sign_in(&server, ANN, ANN_PASSWORD).await.session();
    let me = as_user(&server, &first, Method::GET, "/api/v1/me", None).await.expect(200);
    assert_eq!((&me["org"], &me["principal"]["role"]), (&default_me["org"], &json!("admin")), "{me}");
    sign_in_org(&server, BOB, BOB_PASSWORD, "default").await.expect_refused("401");
    sign_in_org(&server, ANN, ANN_PASSWORD, "initech").await.expect_refused("401");
}

// ---- the audit trail -----------------------------------------------------------------------------

#[tokio::test]
async fn changes_are_recorded_on_the_audit_trail() {
    audit_trail(&Site::sqlite("audit")).await;
}

async fn audit_trail(site: &Site) {
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    let ann = sign_in(&server, ANN, ANN_PASSWORD).await.session();
    let bot = site.create_token("audit bot", "write", "default");
    let bot_label = format!("token:{}:audit bot", bot.id);

    let season =
        with_token(&server, &bot.secret, Method::POST, "/api/v1/seasons", Some(&season_input("Audited", 2031)))
            .await
            .expect(201);
    let id = season["id"].as_i64().expect("an id");
    let other = server.post("/api/v1/seasons", &season_input("Bystander", 2032)).await.expect(201);
    let mut edit = season_input("Audited, renamed", 2031);
    edit["version"] = season["version"].clone();
    let updated =
        with_token(&server, &bot.secret, Method::PUT, &format!("/api/v1/seasons/{id}"), Some(&edit)).await.expect(200);
    let mut edit = season_input("Audited, renamed", 2031);
    edit["thesis"] = json!("Agents replace forms and phone calls");
    edit["version"] = updated["version"].clone();
    as_user(&server, &ann, Method::PUT, &format!("/api/v1/seasons/{id}"), Some(&edit)).await.expect(200);
    // A refused change leaves no record.
    let reader = site.create_token("audit reader", "read", "default");
    let mut stale = season_input("Never stored", 2031);
    stale["version"] = json!(1);
    with_token(&server, &reader.secret, Method::PUT, &format!("/api/v1/seasons/{id}"), Some(&stale))
        .await
        .expect_error(403, "forbidden");
    server.put(&format!("/api/v1/seasons/{id}"), &stale).await.expect_error(409, "conflict");

    // Newest first: the admin's edit, the token's edit, the token's creation.
    let trail = audit_of(&server, "season", id).await;
    let summary: Vec<(String, String)> = trail
        .iter()
        .map(|r| (r["action"].as_str().unwrap_or("?").to_owned(), r["actor"].as_str().unwrap_or("?").to_owned()))
        .collect();
    assert_eq!(
        summary,
        [
            ("update".to_owned(), ANN.to_owned()),
            ("update".to_owned(), bot_label.clone()),
            ("create".to_owned(), bot_label.clone())
        ],
        "{trail:?}"
    );
    for record in &trail {
        assert_eq!((&record["entity"], &record["entity_id"]), (&json!("season"), &json!(id)), "{record}");
        assert!(record["at"].is_string() && record["id"].is_i64(), "{record}");
    }
    let by_token = &trail[1];
    assert_eq!(by_token["before"]["name"], "Audited", "{by_token}");
    assert_eq!(by_token["after"]["name"], "Audited, renamed", "{by_token}");
    assert_eq!(by_token["before"]["thesis"], by_token["after"]["thesis"], "only the name changed: {by_token}");
    assert_eq!((&by_token["before"]["version"], &by_token["after"]["version"]), (&json!(1), &json!(2)), "{by_token}");
    let by_ann = &trail[0];
    assert_eq!(by_ann["before"]["thesis"], "Agents replace forms", "{by_ann}");
    assert_eq!(by_ann["after"]["thesis"], "Agents replace forms and phone calls", "{by_ann}");
    assert_eq!(by_ann["before"]["name"], by_ann["after"]["name"], "{by_ann}");
    assert_eq!(trail[2]["before"], Value::Null, "a creation has no before: {}", trail[2]);
    assert_eq!(trail[2]["after"]["name"], "Audited", "{}", trail[2]);

    // The filter keeps to the one entity; without one, the whole trail, which includes the other
    // season and the tokens made on the command line.
    let bystander = audit_of(&server, "season", other["id"].as_i64().expect("an id")).await;
    assert_eq!(bystander.len(), 1, "{bystander:?}");
    assert_eq!(
        bystander[0]["actor"],
        format!("token:{}:tests", token_id_of(&server, &ann, "tests").await),
        "{}",
        bystander[0]
    );
    let everything = server.get("/api/v1/audit").await.expect(200);
    let entities: Vec<(&str, i64)> = everything
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| (r["entity"].as_str().unwrap_or("?"), r["entity_id"].as_i64().unwrap_or(-1)))
        .collect();
    assert!(entities.contains(&("season", other["id"].as_i64().unwrap())), "{entities:?}");
    assert!(entities.contains(&("api_token", bot.id)), "{entities:?}");
    assert!(entities.contains(&("membership", member_id(&server, ANN).await)), "{entities:?}");
    let token_record =
        everything.as_array().unwrap().iter().find(|r| r["entity"] == "api_token" && r["entity_id"] == bot.id);
    let token_record = token_record.expect("the bot token's creation is recorded");
    assert!(!token_record.to_string().contains(&bot.secret), "the audit trail holds a token secret: {token_record}");
    // Paging back with `before` and `limit`.
    let page = server.get("/api/v1/audit?limit=2").await.expect(200);
    assert_eq!(page.as_array().map(Vec::len), Some(2), "{page}");
    let older = server.get(&format!("/api/v1/audit?limit=2&before={}", page[1]["id"])).await.expect(200);
    assert!(older.as_array().expect("a list").iter().all(|r| r["id"].as_i64() < page[1]["id"].as_i64()), "{older}");

    // Members of every role may read the trail; a query it cannot answer is refused with the field named.
    with_token(&server, &reader.secret, Method::GET, &format!("/api/v1/audit?entity=season&id={id}"), None)
        .await
        .expect(200);
    server.get("/api/v1/audit?entity=planet&id=1").await.expect_invalid(&["entity"]);
    server.get("/api/v1/audit?entity=season").await.expect_invalid(&["entity"]);
    let none = server.get("/api/v1/audit?entity=season&id=987654").await.expect(200);
    assert_eq!(none, json!([]));
}

// ---- pages and server functions -------------------------------------------------------------------

#[tokio::test]
async fn forms_follow_the_same_rules_as_the_api() {
    forms(&Site::sqlite("forms")).await;
}

async fn forms(site: &Site) {
    let server = site.start(&[]);
    site.create_admin(ANN, ANN_PASSWORD, "default");
    site.add_member(CAROL, "exec", &[], Some(CAROL_PASSWORD));
    let ann = sign_in(&server, ANN, ANN_PASSWORD).await.session();
    let carol = sign_in(&server, CAROL, CAROL_PASSWORD).await.session();

    // The season form posts to a server function whose URL the page names.
    let page = as_user(&server, &ann, Method::GET, "/seasons/new", None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let action = form_action(&page.text, "/api/save_season")
        .unwrap_or_else(|| panic!("no season form on the page: {}", page.text));
    let fields = |name: &str| -> Vec<(String, String)> {
        [
            ("id", ""),
            ("version", ""),
            ("name", name),
            ("thesis", "Agents replace forms"),
            ("problems", "Clinicians type too much"),
            ("winning", "Half of all notes drafted by agents"),
            ("starts_on", "2031-01-01"),
            ("ends_on", "2031-06-30"),
            ("slope_target", "20"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    let post_form = |session: Option<&str>, origin: Option<&str>, name: &str| {
        let mut request = plain_client().post(format!("{}{action}", server.base)).form(&fields(name));
        if let Some(session) = session {
            request = request.header(COOKIE, session_cookie(session));
        }
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        server.send(request, format!("POST {action} as {session:?} from {origin:?}"))
    };

    // Anonymous, an exec, and a cross-site page with the admin's cookie all fail to create a season.
    post_form(None, Some(server.base.as_str()), "Anonymous").await;
    post_form(Some(&carol), Some(server.base.as_str()), "Exec").await;
    let cross_site = post_form(Some(&ann), Some(EVIL), "Cross-site").await;
    assert_eq!(cross_site.status, 403, "{}: {}", cross_site.what, cross_site.text);
    for name in ["Anonymous", "Exec", "Cross-site"] {
        assert!(seasons_named(&server, name).await.is_empty(), "the form stored {name:?}");
    }
    // The admin's own form post works, which shows that the refusals above were not about the form.
    let saved = post_form(Some(&ann), Some(server.base.as_str()), "Admin").await;
    assert!(saved.status < 400, "{}: {}", saved.what, saved.text);
    assert_eq!(seasons_named(&server, "Admin").await.len(), 1, "the admin's form did not store the season");
    let trail = audit_of(&server, "season", seasons_named(&server, "Admin").await[0]).await;
    assert_eq!(trail[0]["actor"], ANN, "a form's change is recorded under the person: {}", trail[0]);

    // Pages are for members only.
    for path in ["/members", "/audit", "/seasons/new"] {
        let location = raw_location(&server, path).await;
        assert_eq!(location, format!("/login?next={path}"), "anonymous GET {path}");
    }
}

// ---- the same scenarios on PostgreSQL --------------------------------------------------------------

#[tokio::test]
async fn access_rules_hold_on_postgres() {
    let Some(admin_url) = std::env::var("SLOPE_TEST_POSTGRES_URL").ok().filter(|url| !url.trim().is_empty()) else {
        assert!(
            std::env::var("SLOPE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "SLOPE_REQUIRE_POSTGRES=1 but SLOPE_TEST_POSTGRES_URL is not set"
        );
        eprintln!(
            "skipping the PostgreSQL access test: set SLOPE_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/postgres"
        );
        return;
    };
    // Each scenario gets a database of its own, as each expects a fresh installation.
    first_admin_signs_in(&Site::postgres(&admin_url, "first-admin").await).await;
    session_fixation(&Site::postgres(&admin_url, "fixation").await).await;
    sign_out(&Site::postgres(&admin_url, "sign-out").await).await;
    cross_site_requests(&Site::postgres(&admin_url, "csrf").await).await;
    sign_in_rate_limit(&Site::postgres(&admin_url, "rate-limit").await).await;
    owner_not_locked_out(&Site::postgres(&admin_url, "owner-not-locked-out").await).await;
    token_scopes(&Site::postgres(&admin_url, "tokens").await).await;
    roles(&Site::postgres(&admin_url, "roles").await).await;
    tenancy(&Site::postgres(&admin_url, "tenancy").await).await;
    audit_trail(&Site::postgres(&admin_url, "audit").await).await;
    forms(&Site::postgres(&admin_url, "forms").await).await;
    // Last, because they fail as long as the product bugs they were written for are not fixed (see
    // their SQLite tests), and a failure ends this test.
    sign_in_destinations(&Site::postgres(&admin_url, "next").await).await;
    concurrent_guesses(&Site::postgres(&admin_url, "concurrent-guesses").await).await;
}

// ---- helpers: the installation under test ------------------------------------------------------------

/// Where a scenario's server keeps its state: a scratch folder, and a PostgreSQL database of its own
/// when one is given. The command line and the server are pointed at the same place.
struct Site {
    env: Vec<(String, String)>,
    scratch: Scratch,
    // Declared last so that the database is dropped after the folder; servers are dropped before both,
    // at the end of the scenario that started them.
    _database: Option<PgDatabase>,
}

/// An API token as `slope token create --json` prints it.
struct Token {
    id: i64,
    secret: String,
}

impl Site {
    fn sqlite(label: &str) -> Site {
        Site { env: base_env(), scratch: Scratch::new(&format!("access-{label}")), _database: None }
    }

    async fn postgres(admin_url: &str, label: &str) -> Site {
        let database = PgDatabase::create(admin_url, "access").await;
        let mut env = base_env();
        env.push(("DATABASE_URL".to_owned(), database.url.clone()));
        Site { env, scratch: Scratch::new(&format!("access-pg-{label}")), _database: Some(database) }
    }

    fn dir(&self) -> &Path {
        &self.scratch.0
    }

    fn start(&self, extra: &[(&str, &str)]) -> Server {
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.extend_from_slice(extra);
        Server::start(self.dir(), &env)
    }

    /// Runs `slope ARGS --data-dir DIR` against this site's database, with `stdin` as its input.
    fn slope(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_slope"));
        command.args(args).arg("--data-dir").arg(self.dir()).current_dir(self.dir());
        // A developer's own environment must not point the command at another database.
        for (var, _) in std::env::vars() {
            if var.starts_with("SLOPE_") || var == "DATABASE_URL" {
                command.env_remove(var);
            }
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run slope {args:?}: {e}"));
        let mut input = child.stdin.take().expect("stdin is piped");
        input.write_all(stdin.as_bytes()).unwrap_or_else(|e| panic!("cannot write to slope {args:?}: {e}"));
        // Closing standard input is what tells the command that no more is coming.
        drop(input);
        child.wait_with_output().unwrap_or_else(|e| panic!("slope {args:?} did not finish: {e}"))
    }

    /// Like [`Site::slope`], asserting success; returns standard output.
    #[track_caller]
    fn slope_ok(&self, args: &[&str], stdin: &str) -> String {
        let output = self.slope(args, stdin);
        assert!(output.status.success(), "slope {args:?} failed: {}", show(&output));
        String::from_utf8(output.stdout).expect("the command prints text")
    }

    #[track_caller]
    fn create_admin(&self, email: &str, password: &str, org: &str) {
        self.slope_ok(&["admin", "create", "--email", email, "--org", org], &format!("{password}\n"));
    }

    /// Adds a member of the default organisation with `slope admin member`; `password` is needed for a
    /// new account only.
    #[track_caller]
    fn add_member(&self, email: &str, role: &str, squads: &[i64], password: Option<&str>) {
        let squads = squads.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let mut args = vec!["admin", "member", "--email", email, "--role", role];
        if !squads.is_empty() {
            args.extend(["--squads", squads.as_str()]);
        }
        let stdin = password.map(|p| format!("{p}\n")).unwrap_or_default();
        let out = self.slope_ok(&args, &stdin);
        assert!(out.contains(email), "{out}");
    }

    #[track_caller]
    fn create_token(&self, name: &str, scopes: &str, org: &str) -> Token {
        let out = self.slope_ok(&["token", "create", "--name", name, "--scopes", scopes, "--org", org, "--json"], "");
        let created: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("token create --json printed {out:?}: {e}"));
        Token {
            id: created["token"]["id"].as_i64().unwrap_or_else(|| panic!("no token id in {created}")),
            secret: created["secret"].as_str().unwrap_or_else(|| panic!("no secret in {created}")).to_owned(),
        }
    }
}

/// What every server and command of these tests runs with: no base model to register, which would only
/// slow the start.
fn base_env() -> Vec<(String, String)> {
    vec![("SLOPE_BASE_MODEL".to_owned(), String::new())]
}

fn show(output: &Output) -> String {
    format!(
        "exit {:?}; stdout: {}; stderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---- helpers: browsers and scripts -------------------------------------------------------------------

/// A client that follows no redirects (so each answer is seen as sent) and keeps no cookies (so each
/// request carries exactly the cookie the test gives it).
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client")
}

/// A plain client whose connections come from `address`, a loopback address other than the usual one,
/// so that the server sees another client machine.
fn client_from(address: &str) -> reqwest::Client {
    let address: IpAddr = address.parse().expect("an IP address");
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .local_address(address)
        .build()
        .expect("HTTP client")
}

fn session_cookie(session: &str) -> String {
    format!("slope_session={session}")
}

/// The answer to `POST /auth/login`.
#[derive(Debug)]
struct SignIn {
    what: String,
    status: u16,
    location: String,
    /// `x-slope-sign-in`: why a sign-in was refused, as an HTTP status.
    outcome: Option<String>,
    retry_after: Option<String>,
    set_cookie: Option<String>,
}

impl SignIn {
    /// Asserts a successful sign-in and returns the session id the cookie carries.
    #[track_caller]
    fn session(&self) -> String {
        assert_eq!(self.status, 303, "{}: {self:?}", self.what);
        assert_eq!(self.outcome, None, "{}: {self:?}", self.what);
        let cookie = self.set_cookie.as_deref().unwrap_or_else(|| panic!("{}: no cookie was set: {self:?}", self.what));
        let value = cookie
            .split(';')
            .next()
            .and_then(|pair| {
                let pair = pair.trim();
                pair.strip_prefix("slope_session=").or_else(|| pair.strip_prefix("__Host-slope_session="))
            })
            .unwrap_or_else(|| panic!("{}: not a session cookie: {cookie}", self.what));
        assert!(!value.is_empty(), "{}: an empty session cookie: {cookie}", self.what);
        value.to_owned()
    }

    /// The cookie's attributes after its value (`HttpOnly`, `Path=/`, …).
    fn cookie_attributes(&self) -> Vec<String> {
        self.set_cookie.as_deref().unwrap_or_default().split(';').skip(1).map(|a| a.trim().to_owned()).collect()
    }

    /// Asserts a refused sign-in: back to the form with a message, the reason in `x-slope-sign-in`, and
    /// no cookie.
    #[track_caller]
    fn expect_refused(&self, outcome: &str) {
        assert_eq!(self.status, 303, "{}: {self:?}", self.what);
        assert_eq!(self.outcome.as_deref(), Some(outcome), "{}: {self:?}", self.what);
        assert!(self.location.starts_with("/login?error="), "{}: {self:?}", self.what);
        assert!(self.set_cookie.is_none(), "{}: a refused sign-in set a cookie: {self:?}", self.what);
    }
}

/// Accepts an invitation from its page's form, as a browser does; a success signs the holder in.
async fn accept(server: &Server, secret: &str, name: &str, password: &str) -> SignIn {
    let fields = [("token", secret), ("name", name), ("password", password)];
    let request =
        plain_client().post(format!("{}/auth/accept", server.base)).header(ORIGIN, server.base.as_str()).form(&fields);
    read_form_answer(
        request,
        format!("acceptance of invitation {}…", &secret[..secret.len().min(16)]),
        "x-slope-accept",
    )
    .await
}

/// Invites `email` as `role` through the API, as an admin's session, and answers the invitation's secret.
async fn invite(server: &Server, admin: &str, invitee: &Value) -> (Value, String) {
    let invited = as_user(server, admin, Method::PUT, "/api/v1/members", Some(invitee)).await.expect(202);
    let secret = invited["secret"].as_str().unwrap_or_else(|| panic!("no secret: {invited}")).to_owned();
    assert_eq!(invited["accept_path"], format!("/invitations/{secret}"), "{invited}");
    (invited, secret)
}

fn form(email: &str, password: &str, org: &str, next: &str) -> Vec<(String, String)> {
    [("email", email), ("password", password), ("org", org), ("next", next)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Signs in from this server's sign-in page, as a browser does.
async fn sign_in(server: &Server, email: &str, password: &str) -> SignIn {
    sign_in_with(server, &plain_client(), &form(email, password, "", "/"), Some(server.base.as_str()), None).await
}

async fn sign_in_org(server: &Server, email: &str, password: &str, org: &str) -> SignIn {
    sign_in_with(server, &plain_client(), &form(email, password, org, "/"), Some(server.base.as_str()), None).await
}

async fn sign_in_from(server: &Server, client: &reqwest::Client, email: &str, password: &str) -> SignIn {
    sign_in_with(server, client, &form(email, password, "", "/"), Some(server.base.as_str()), None).await
}

/// Posts the sign-in form with any headers, for the requests a cross-site page could make.
async fn sign_in_headers(server: &Server, fields: &[(String, String)], headers: &[(&str, String)]) -> SignIn {
    let mut request = plain_client().post(format!("{}/auth/login", server.base)).form(fields);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    read_sign_in(request, format!("POST /auth/login with {headers:?}")).await
}

async fn sign_in_with(
    server: &Server,
    client: &reqwest::Client,
    fields: &[(String, String)],
    origin: Option<&str>,
    cookie: Option<&str>,
) -> SignIn {
    let mut request = client.post(format!("{}/auth/login", server.base)).form(fields);
    if let Some(origin) = origin {
        request = request.header(ORIGIN, origin);
    }
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, session_cookie(cookie));
    }
    let email = fields.iter().find(|(k, _)| k == "email").map(|(_, v)| v.as_str()).unwrap_or_default();
    read_sign_in(request, format!("sign-in of {email:?}")).await
}

async fn read_sign_in(request: reqwest::RequestBuilder, what: String) -> SignIn {
    read_form_answer(request, what, "x-slope-sign-in").await
}

/// The answer of a form handler that signs in (`/auth/login`, `/auth/accept`); `outcome` is the header
/// that carries a refusal's status.
async fn read_form_answer(request: reqwest::RequestBuilder, what: String, outcome: &str) -> SignIn {
    let response = request.send().await.unwrap_or_else(|e| panic!("{what}: no answer ({e})"));
    let status = response.status().as_u16();
    assert!(status < 500, "{what}: the server failed with {status}");
    SignIn {
        status,
        location: header(&response, LOCATION.as_str()).unwrap_or_default(),
        outcome: header(&response, outcome),
        retry_after: header(&response, RETRY_AFTER.as_str()),
        set_cookie: header(&response, SET_COOKIE.as_str()),
        what,
    }
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().expect("a readable header").to_owned())
}

/// Sends a request with exactly `headers` (no token, no cookie unless given).
async fn send(server: &Server, method: Method, path: &str, body: Option<&Value>, headers: &[(&str, String)]) -> Reply {
    let mut request = plain_client().request(method.clone(), format!("{}{path}", server.base));
    if let Some(body) = body {
        request = request.json(body);
    }
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    server.send(request, format!("{method} {path} with {headers:?}")).await
}

/// Sends a request as a signed-in browser does from one of this server's pages: with the session cookie
/// and this server's origin.
async fn as_user(server: &Server, session: &str, method: Method, path: &str, body: Option<&Value>) -> Reply {
    let headers = [(COOKIE.as_str(), session_cookie(session)), (ORIGIN.as_str(), server.base.clone())];
    let mut reply = send(server, method.clone(), path, body, &headers).await;
    reply.what = format!("{method} {path} as session {}…", &session[..session.len().min(8)]);
    reply
}

/// Sends a request as a script with `token`.
async fn with_token(server: &Server, token: &str, method: Method, path: &str, body: Option<&Value>) -> Reply {
    let headers = [(AUTHORIZATION.as_str(), format!("Bearer {token}"))];
    let mut reply = send(server, method.clone(), path, body, &headers).await;
    reply.what = format!("{method} {path} with token {}…", &token[..token.len().min(12)]);
    reply
}

/// Posts a batch of events to the loop `notes` with `token`.
async fn ingest_with(server: &Server, token: &str, body: Vec<u8>) -> Reply {
    let request = plain_client()
        .post(format!("{}/api/v1/loops/notes/events", server.base))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header("content-type", "application/x-ndjson")
        .body(body);
    server.send(request, format!("POST /api/v1/loops/notes/events with token {}…", &token[..12])).await
}

/// Where an anonymous GET of `path` is sent.
async fn raw_location(server: &Server, path: &str) -> String {
    let response = plain_client().get(format!("{}{path}", server.base)).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 303, "anonymous GET {path}");
    header(&response, LOCATION.as_str()).unwrap_or_default()
}

// ---- helpers: reading the organisation ----------------------------------------------------------------

fn season_input(name: &str, year: i32) -> Value {
    json!({
        "name": name,
        "thesis": "Agents replace forms",
        "problems": ["Clinicians type too much"],
        "winning": "Half of all notes drafted by agents",
        "starts_on": format!("{year}-01-01"),
        "ends_on": format!("{year}-06-30"),
        "slope_target": 0.2,
    })
}

/// The ids of the default organisation's seasons named `name`, read with the harness's token.
async fn seasons_named(server: &Server, name: &str) -> Vec<i64> {
    let seasons = server.get("/api/v1/seasons").await.expect(200);
    seasons
        .as_array()
        .expect("a list")
        .iter()
        .filter(|s| s["season"]["name"] == name)
        .filter_map(|s| s["season"]["id"].as_i64())
        .collect()
}

/// The user id of a member of the default organisation.
async fn member_id(server: &Server, email: &str) -> i64 {
    let members = server.get("/api/v1/members").await.expect(200);
    members
        .as_array()
        .and_then(|all| all.iter().find(|m| m["email"] == email))
        .and_then(|m| m["user_id"].as_i64())
        .unwrap_or_else(|| panic!("{email} is not a member: {members}"))
}

/// The audit trail of one entity, newest first, read with the harness's token.
async fn audit_of(server: &Server, entity: &str, id: i64) -> Vec<Value> {
    let trail = server.get(&format!("/api/v1/audit?entity={entity}&id={id}")).await.expect(200);
    trail.as_array().unwrap_or_else(|| panic!("not a list: {trail}")).clone()
}

/// The audit trail of an entity as a signed-in member of the organisation sees it.
async fn audit_of_as(server: &Server, session: &str, entity: &str, id: i64) -> Vec<Value> {
    let path = format!("/api/v1/audit?entity={entity}&id={id}");
    let trail = as_user(server, session, Method::GET, &path, None).await.expect(200);
    trail.as_array().unwrap_or_else(|| panic!("not a list: {trail}")).clone()
}

/// The id of the first token an admin's organisation lists.
async fn first_token_id(server: &Server, admin_session: &str) -> i64 {
    let tokens = as_user(server, admin_session, Method::GET, "/api/v1/tokens", None).await.expect(200);
    tokens[0]["id"].as_i64().unwrap_or_else(|| panic!("no token in {tokens}"))
}

async fn token_id_of(server: &Server, admin_session: &str, name: &str) -> i64 {
    let tokens = as_user(server, admin_session, Method::GET, "/api/v1/tokens", None).await.expect(200);
    tokens
        .as_array()
        .and_then(|all| all.iter().find(|t| t["name"] == name))
        .and_then(|t| t["id"].as_i64())
        .unwrap_or_else(|| panic!("no token named {name:?} in {tokens}"))
}

fn goal_path(goal: &Value) -> String {
    format!("/api/v1/squad-goals/{}", goal["id"])
}

/// The body of `PUT /api/v1/squad-goals/{id}` that keeps everything of `goal` but its title: the goal's
/// fields with its measure spread out flat, as the API takes them, and the version it is based on.
fn goal_edit(goal: &Value, title: &str) -> Value {
    let mut edit = json!({
        "key_result_id": goal["key_result_id"],
        "title": title,
        "starts_on": goal["starts_on"],
        "ends_on": goal["ends_on"],
        "investment": goal["investment"],
        "challenges": goal["challenges"].as_str().unwrap_or(""),
        "kill_criteria": goal["kill_criteria"].as_str().unwrap_or(""),
        "planned_capacity": goal["planned_capacity"],
        "status": goal["status"],
        "metric": goal["metric"]["key"].as_str().unwrap_or(""),
        "version": goal["version"],
    });
    let measure = goal["measure"].as_object().unwrap_or_else(|| panic!("a goal without a measure: {goal}"));
    for (field, value) in measure {
        edit[field] = value.clone();
    }
    edit
}

/// The first form `action` on `html` that starts with `prefix` (server functions' URLs end in a hash
/// that only the page tells).
fn form_action(html: &str, prefix: &str) -> Option<String> {
    let start = html.find(&format!("action=\"{prefix}"))? + "action=\"".len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].replace("&amp;", "&"))
}

// ---- helpers: a PostgreSQL database per scenario ----------------------------------------------------
