use super::*;

fn window(requests: u32, ms: u64) -> Window {
    Window { requests, length: Duration::from_millis(ms) }
}

#[test]
fn a_window_admits_its_limit_and_frees_as_the_oldest_leaves() {
    let mut limits = SlidingLimits::new(vec![window(2, 1000)]);
    let t0 = Instant::now();
    assert_eq!(limits.admit(t0), Ok(()));
    assert_eq!(limits.admit(t0 + Duration::from_millis(400)), Ok(()));
    assert_eq!(limits.admit(t0 + Duration::from_millis(999)), Err(Duration::from_millis(1)));
    assert_eq!(limits.admit(t0 + Duration::from_millis(1000)), Ok(()));
    assert_eq!(limits.admit(t0 + Duration::from_millis(1100)), Err(Duration::from_millis(300)));
    assert_eq!(limits.most_admitted(), &[2]);
}

#[test]
fn every_window_must_admit_and_a_refusal_books_nothing() {
    let mut limits = SlidingLimits::new(vec![window(10, 1000), window(3, 60_000)]);
    let t0 = Instant::now();
    for i in 0..3 {
        assert_eq!(limits.admit(t0 + Duration::from_millis(i)), Ok(()));
    }
    // The minute is full: refused until the first of the three is a minute old.
    assert_eq!(limits.admit(t0 + Duration::from_secs(2)), Err(Duration::from_millis(58_000)));
    assert_eq!(limits.admit(t0 + Duration::from_secs(60)), Ok(()));
    assert_eq!(limits.most_admitted(), &[3, 3]);
}

#[test]
fn windows_parse_and_say_what_is_wrong() {
    assert_eq!(Window::parse("50/1000"), Ok(window(50, 1000)));
    assert!(Window::parse("50").unwrap_err().contains("REQUESTS/MILLISECONDS"));
    assert!(Window::parse("0/1000").unwrap_err().contains("at least 1"));
    assert!(Window::parse("x/1000").unwrap_err().contains("not a number"));
}

#[tokio::test]
async fn over_http_it_admits_refuses_with_retry_after_fails_on_command_and_logs() {
    let sim = Simulator::start("t", "127.0.0.1:0".parse().unwrap(), vec![window(2, 60_000)]).await.unwrap();
    let client = reqwest::Client::new();
    let send = |n: u32| client.post(sim.url()).json(&json!({"n": n})).send();
    assert_eq!(send(1).await.unwrap().status(), 200);
    assert_eq!(send(2).await.unwrap().status(), 200);
    let refused = send(3).await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry_after), "{retry_after}");

    let control = format!("http://{}/control", sim.addr());
    let answer = client.post(&control).json(&json!({"fail_status": 500, "fail_next": 1})).send().await.unwrap();
    assert_eq!(answer.status(), 204);
    assert_eq!(send(4).await.unwrap().status(), 500);
    assert_eq!(send(5).await.unwrap().status(), 429, "failing on command ends after fail_next");

    let stats: Stats = client.get(format!("http://{}/stats", sim.addr())).send().await.unwrap().json().await.unwrap();
    assert_eq!((stats.received, stats.admitted, stats.breaches, stats.failed), (5, 2, 2, 1));
    assert_eq!(stats.windows, vec![[2, 60_000, 2]]);
    let log: Vec<Request> =
        client.get(format!("http://{}/requests?after=1", sim.addr())).send().await.unwrap().json().await.unwrap();
    let seen: Vec<(u16, Value)> = log.into_iter().map(|r| (r.status, r.body["n"].clone())).collect();
    assert_eq!(seen, vec![(200, json!(2)), (429, json!(3)), (500, json!(4)), (429, json!(5))]);
    assert_eq!(sim.stats(), stats);
}
