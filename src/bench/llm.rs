//! `codegym bench llm`: the OpenAI-compatible client against a local server that answers every
//! request after a fixed delay (200 ms, like a busy inference server), side by side with the
//! client a Python team would write (a 64-thread pool of `urllib` requests). Prints requests per
//! second, the ideal (in-flight / delay), and the client's own cost per request: CPU time, and the
//! mean latency above the server's delay.

use crate::llm::{ChatRequest, Client, Message, OpenAiBackend, OpenAiSettings, Recording, RetryPolicy, Sampling};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
pub struct LlmBenchSettings {
    pub requests: usize,
    pub in_flight: usize,
    pub delay: Duration,
    pub python: String,
}

const ANSWER: &str = r#"{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"<task>t</task><env>e</env>"},"finish_reason":"stop"}],"usage":{"prompt_tokens":120,"completion_tokens":8}}"#;

/// Serves keep-alive HTTP/1.1 on `listener`: each request is answered after `delay`.
async fn serve(listener: tokio::net::TcpListener, delay: Duration) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buffer = Vec::with_capacity(8192);
            let mut chunk = [0u8; 8192];
            loop {
                // Read one request: headers, then Content-Length bytes of body.
                let (header_end, length) = loop {
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let headers = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                        let length = headers
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                };
                while buffer.len() < header_end + length {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
                buffer.drain(..header_end + length);
                tokio::time::sleep(delay).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ANSWER}",
                    ANSWER.len()
                );
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// CPU time (user + system) of this process so far, where the platform tells.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

struct Measured {
    seconds: f64,
    cpu_per_request_ms: Option<f64>,
    latency_above_delay_ms: f64,
}

fn requests(count: usize) -> Vec<ChatRequest> {
    (0..count)
        .map(|i| ChatRequest {
            stage: "bench".into(),
            prompt_version: "bench".into(),
            entity_id: i.to_string(),
            label: format!("request {i}"),
            messages: vec![Message::new("user", format!("request {i}: {}", "lorem ipsum ".repeat(200)))],
            sampling: Sampling::default(),
            n: 1,
        })
        .collect()
}

fn ours(runtime: &tokio::runtime::Runtime, url: &str, settings: &LlmBenchSettings) -> Result<Measured> {
    let backend = OpenAiBackend::new(OpenAiSettings {
        base_url: url.into(),
        api_key: None,
        in_flight: settings.in_flight,
        timeout: Duration::from_secs(60),
        retry: RetryPolicy::default(),
        n_per_request: true,
    })?;
    let client = Client::new(Arc::new(backend), Recording::default(), None);
    // Warm the connection pool, as a long build would be.
    runtime.block_on(client.complete_all(requests(settings.in_flight), None))?;
    let batch = requests(settings.requests);
    let (cpu, started) = (process_cpu(), Instant::now());
    let calls = runtime.block_on(client.complete_all(batch, None))?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_ms = process_cpu().zip(cpu).map(|(after, before)| (after - before).as_secs_f64() * 1000.0);
    let mut latency = 0.0;
    for call in &calls {
        let call = call.as_ref().map_err(|e| anyhow::anyhow!("bench request failed: {e}"))?;
        latency += call.completion.latency_ms.unwrap_or(0) as f64;
    }
    Ok(Measured {
        seconds,
        cpu_per_request_ms: cpu_ms.map(|ms| ms / settings.requests as f64),
        latency_above_delay_ms: latency / calls.len() as f64 - settings.delay.as_secs_f64() * 1000.0,
    })
}

const PYTHON_CLIENT: &str = r#"
import json, resource, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, count, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def call(i):
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "request %d: %s" % (i, "lorem ipsum " * 200)}], "n": 1}).encode()
    request = urllib.request.Request(url + "/chat/completions", data=body, headers={"Content-Type": "application/json"})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=60) as response:
        reply = json.loads(response.read())
    assert reply["choices"]
    return time.monotonic() - started
with ThreadPoolExecutor(threads) as pool:
    list(pool.map(call, range(threads)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    started = time.monotonic()
    latencies = list(pool.map(call, range(count)))
    seconds = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime - cpu, "latency": sum(latencies) / len(latencies)}))
"#;

fn python(url: &str, settings: &LlmBenchSettings) -> Option<Measured> {
    let output = std::process::Command::new(&settings.python)
        .args(["-c", PYTHON_CLIENT, url, &settings.requests.to_string(), &settings.in_flight.to_string()])
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("baseline failed: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    Some(Measured {
        seconds: value["seconds"].as_f64()?,
        cpu_per_request_ms: Some(value["cpu"].as_f64()? * 1000.0 / settings.requests as f64),
        latency_above_delay_ms: value["latency"].as_f64()? * 1000.0 - settings.delay.as_secs_f64() * 1000.0,
    })
}

pub fn llm(settings: &LlmBenchSettings) -> Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("failed to start tokio")?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    runtime.spawn(serve(listener, settings.delay));
    let ideal = settings.in_flight as f64 / settings.delay.as_secs_f64();
    println!(
        "bench llm: {} requests, {} in flight, server answers after {} ms (ideal {:.0} requests/s)",
        settings.requests,
        settings.in_flight,
        settings.delay.as_millis(),
        ideal
    );
    let ours = ours(&runtime, &url, settings)?;
    let row = |name: &str, m: &Measured| {
        let rps = settings.requests as f64 / m.seconds;
        let cpu = m.cpu_per_request_ms.map_or("n/a".to_string(), |ms| format!("{ms:.3} ms"));
        println!(
            "  {name:<28} {rps:>7.0} requests/s ({:.0}% of ideal)   CPU per request {cpu:>9}   latency above the delay {:.2} ms",
            100.0 * rps / ideal,
            m.latency_above_delay_ms
        );
        rps
    };
    let our_rps = row("codegym (reqwest + tokio)", &ours);
    println!("  (our CPU includes the in-process server's)");
    match python(&url, settings) {
        Some(baseline) => {
            let base_rps = row(&format!("python3 urllib, {} threads", settings.in_flight), &baseline);
            println!("  throughput ratio: {:.2}x", our_rps / base_rps);
            if let (Some(a), Some(b)) = (ours.cpu_per_request_ms, baseline.cpu_per_request_ms) {
                println!("  CPU per request ratio (baseline / ours): {:.1}x", b / a);
            }
        }
        None => println!("  baseline skipped: {} is not available", settings.python),
    }
    Ok(())
}
