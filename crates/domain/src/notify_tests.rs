use std::net::IpAddr;

use super::*;

#[test]
fn webhook_urls_are_http_or_https_with_a_host_and_no_credentials() {
    let url = WebhookUrl::parse(" https://hooks.example.com/services/T0/B0?x=1 ").unwrap();
    assert_eq!((url.host(), url.port(), url.is_https()), ("hooks.example.com", 443, true));
    let url = WebhookUrl::parse("http://127.0.0.1:8080/hook").unwrap();
    assert_eq!((url.host(), url.port()), ("127.0.0.1", 8080));
    let url = WebhookUrl::parse("http://[::1]:9000").unwrap();
    assert_eq!((url.host(), url.port()), ("::1", 9000));
    for (bad, says) in [
        ("ftp://example.com", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https://", "no host"),
        ("https://example.com:0/", "invalid port"),
        ("https://example.com:99999/", "invalid port"),
        ("https://exa mple.com/", "spaces"),
        ("", "required"),
    ] {
        let err = WebhookUrl::parse(bad).unwrap_err();
        assert!(err.contains(says), "{bad:?}: {err}");
    }
}

#[test]
fn internal_addresses_are_the_servers_own_networks() {
    for internal in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:10.0.0.1",
    ] {
        assert!(is_internal(internal.parse::<IpAddr>().unwrap()), "{internal}");
    }
    for public in ["8.8.8.8", "151.101.1.69", "2606:4700::1111", "172.32.0.1"] {
        assert!(!is_internal(public.parse::<IpAddr>().unwrap()), "{public}");
    }
}

#[test]
fn a_contact_point_defaults_to_json_and_reports_every_bad_field() {
    let spec = ContactPointInput { name: "Ops".into(), url: "https://example.com/h".into(), ..Default::default() }
        .parse()
        .unwrap();
    assert_eq!((spec.format, spec.squad), (WebhookFormat::Json, None));
    let err =
        ContactPointInput { name: "".into(), url: "gopher://x".into(), format: Some("xml".into()), squad_id: Some(0) }
            .parse()
            .unwrap_err();
    assert_eq!(err.0.keys().collect::<Vec<_>>(), ["format", "name", "squad_id", "url"]);
}

#[test]
fn retries_back_off_doubling_up_to_an_hour() {
    let secs = |attempt| retry_delay(30, attempt).num_seconds();
    assert_eq!([secs(1), secs(2), secs(3), secs(8), secs(40)], [30, 60, 120, 3600, 3600]);
    assert_eq!(retry_delay(0, 1).num_seconds(), 1);
}
