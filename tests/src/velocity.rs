//! API Gateway mapping templates rendered by the real Apache Velocity engine: the
//! bench's third template engine, beside MiniStack's subset and LocalStack's airspeed.
//!
//! AWS renders mapping templates with Velocity but documents neither its version nor
//! whether `$input.params().header` is case-sensitive, so a test renders a template
//! under every plausible [`Behaviour`]: Velocity 1.7 or 2.x (they differ, for one, on
//! `#set($x = $null)`), with a case-sensitive or case-insensitive header map. The
//! renderer is `tests/velocity/`'s Java program, built on first use by
//! `tests/velocity/build.sh` (JDK 17 and mvn needed; it fails loudly without them).

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Which Velocity renders the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Engine {
    /// `org.apache.velocity:velocity:1.7`: a `#set` to null leaves the target unchanged.
    #[serde(rename = "1.7")]
    V1_7,
    /// `org.apache.velocity:velocity-engine-core:2.4.1`: a `#set` to null sets null.
    #[serde(rename = "2")]
    V2,
}

/// How `$input.params().header` (and the header step of `$input.params('x')`) matches
/// names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderCase {
    /// A plain map keyed by each name as the sender spelled it.
    Sensitive,
    /// A map that ignores ASCII case (`String.CASE_INSENSITIVE_ORDER`).
    Insensitive,
}

/// One way AWS may render a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Behaviour {
    /// The Velocity version.
    pub engine: Engine,
    /// The header map's case rule.
    pub header_case: HeaderCase,
}

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engine = match self.engine {
            Engine::V1_7 => "Velocity 1.7",
            Engine::V2 => "Velocity 2",
        };
        let case = match self.header_case {
            HeaderCase::Sensitive => "case-sensitive headers",
            HeaderCase::Insensitive => "case-insensitive headers",
        };
        write!(f, "{engine}, {case}")
    }
}

/// Every behaviour a template must be right under.
pub const BEHAVIOURS: [Behaviour; 4] = [
    Behaviour {
        engine: Engine::V1_7,
        header_case: HeaderCase::Sensitive,
    },
    Behaviour {
        engine: Engine::V1_7,
        header_case: HeaderCase::Insensitive,
    },
    Behaviour {
        engine: Engine::V2,
        header_case: HeaderCase::Sensitive,
    },
    Behaviour {
        engine: Engine::V2,
        header_case: HeaderCase::Insensitive,
    },
];

/// One render: the template and the method request it sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The mapping template.
    pub template: String,
    /// Which Velocity.
    pub engine: Engine,
    /// The header map's case rule.
    pub header_case: HeaderCase,
    /// Request headers as sent, in order (a repeated name keeps the last value).
    pub headers: Vec<(String, String)>,
    /// Query string parameters.
    pub query: BTreeMap<String, String>,
    /// Path parameters.
    pub path: BTreeMap<String, String>,
    /// The raw request body (`$input.body`; JSON for `$input.path`/`$input.json`).
    pub body: String,
}

impl Request {
    /// A request with no headers, parameters or body.
    pub fn new(template: impl Into<String>, behaviour: Behaviour) -> Self {
        Self {
            template: template.into(),
            engine: behaviour.engine,
            header_case: behaviour.header_case,
            headers: Vec::new(),
            query: BTreeMap::new(),
            path: BTreeMap::new(),
            body: String::new(),
        }
    }

    /// Adds a header, spelled as the sender writes it.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a query string parameter.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.insert(name.into(), value.into());
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
}

/// What the template rendered to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rendered {
    /// The rendered text.
    pub output: String,
    /// `$context.responseOverride.status`, when the template set it.
    pub status_override: Option<u16>,
    /// The Velocity version that rendered it.
    pub engine: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Answer {
    Rendered(Rendered),
    Failed { error: String },
}

/// A cold JVM on a busy two-core machine starts in seconds; this bounds a hung one.
const RENDER_TIMEOUT: Duration = Duration::from_secs(180);

/// The renderer script, built by `tests/velocity/build.sh` on first use.
pub fn runner() -> Result<PathBuf> {
    static RUNNER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    RUNNER
        .get_or_init(|| {
            crate::process::run_setup_script(&crate::repo_root().join("tests/velocity/build.sh"))
                .context("building the Velocity renderer (needs a JDK 17+, mvn and Maven Central)")
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Renders one template; a template Velocity refuses (parse error, a method that
/// throws) is an error carrying the engine's message.
pub fn render(request: &Request) -> Result<Rendered> {
    let input = serde_json::to_vec(request).context("encoding the render request")?;
    let output = run(&input)?;
    if !output.status.success() {
        bail!(
            "Velocity ({:?}) refused the template: {}\ntemplate: {}",
            request.engine,
            String::from_utf8_lossy(&output.stderr).trim(),
            request.template
        );
    }
    let rendered: Rendered = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "reading the renderer's answer {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    check_engine(request.engine, &rendered)?;
    Ok(rendered)
}

/// Renders many templates in one JVM (both engines may be mixed); each item is the
/// render or the engine's refusal. Fails as a whole only when the renderer cannot run.
pub fn render_all(requests: &[Request]) -> Result<Vec<Result<Rendered>>> {
    let input = serde_json::to_vec(requests).context("encoding the render requests")?;
    let output = run(&input)?;
    if !output.status.success() {
        bail!(
            "the Velocity renderer failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let answers: Vec<Answer> = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "reading the renderer's answers {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    if answers.len() != requests.len() {
        bail!(
            "the renderer answered {} of {} requests",
            answers.len(),
            requests.len()
        );
    }
    Ok(requests
        .iter()
        .zip(answers)
        .map(|(request, answer)| match answer {
            Answer::Rendered(rendered) => {
                check_engine(request.engine, &rendered).map(|()| rendered)
            }
            Answer::Failed { error } => Err(anyhow!(
                "Velocity ({:?}) refused the template: {error}\ntemplate: {}",
                request.engine,
                request.template
            )),
        })
        .collect())
}

/// Each render says which Velocity ran, so a wrong class path cannot pass unseen.
fn check_engine(engine: Engine, rendered: &Rendered) -> Result<()> {
    let expected = match engine {
        Engine::V1_7 => rendered.engine == "1.7",
        Engine::V2 => rendered.engine.starts_with("2."),
    };
    if expected {
        Ok(())
    } else {
        bail!(
            "asked for Velocity {engine:?}, rendered by {}",
            rendered.engine
        )
    }
}

fn run(input: &[u8]) -> Result<std::process::Output> {
    let runner = runner()?;
    let mut child = Command::new(&runner)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", runner.display()))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().context("the renderer's stdin")?;
    let input = input.to_vec();
    // Write from a thread: a big batch could fill the pipe while the JVM's stdout fills.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(RENDER_TIMEOUT) {
        Ok(output) => output.with_context(|| format!("running {}", runner.display()))?,
        Err(_) => {
            // Our own child, by its pid (the runner execs java, so this is the JVM).
            let _ = Command::new("kill").arg(pid.to_string()).status();
            bail!(
                "{} did not answer within {RENDER_TIMEOUT:?}; killed it",
                runner.display()
            );
        }
    };
    // A renderer that failed says why on stderr, which matters more than a broken pipe.
    match writer.join() {
        Ok(Ok(())) => Ok(output),
        _ if !output.status.success() => Ok(output),
        Ok(Err(e)) => Err(e).context("writing to the renderer"),
        Err(_) => bail!("the thread writing to the renderer panicked"),
    }
}
