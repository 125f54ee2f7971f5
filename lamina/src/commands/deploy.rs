//! `lamina deploy`: from a model or a Wasm file to a URL in one command.
//!
//! Packages the file, creates the function (or gives an existing one the new code and
//! settings) through the Lambda API, waits until it is Active, makes sure it has a
//! function URL, and prints that URL with a `curl` that calls it.

use std::io::{Cursor, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Args;
use hyper::Method;
use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::UsageError;
use crate::options::EndpointArgs;
use crate::remote::{Remote, RemoteError, query_value};

#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// What to deploy: model.onnx (Runtime onnx), a .wasm (Runtime wasm), a Python
    /// handler file or a folder of Python code (Runtime python3.14), a .zip package (its
    /// runtime read from what it holds), or s3://bucket/key, an object on the node's S3
    /// endpoint that the node copies (a bare .onnx or .wasm, or a zip with --runtime).
    pub path: PathBuf,
    /// The runtime of an S3 object whose name does not tell (onnx or wasm).
    #[arg(long)]
    pub runtime: Option<String>,
    /// The handler: for Python, `module.function` (default: lambda_function.lambda_handler,
    /// or `<file>.lambda_handler` for a single file); for an S3 object, the path of the
    /// model or Wasm file in the package.
    #[arg(long)]
    pub handler: Option<String>,
    /// The function's name; an existing function gets the new code.
    #[arg(long)]
    pub name: String,
    /// MemorySize in MB.
    #[arg(long)]
    pub memory: Option<u32>,
    /// Timeout in seconds.
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Make the function URL public (AuthType NONE) instead of requiring signed requests.
    #[arg(long)]
    pub public: bool,
    /// Seconds to wait for the function to become Active.
    #[arg(long, default_value_t = 300)]
    pub wait: u64,
    #[command(flatten)]
    pub remote: EndpointArgs,
}

/// A deployment package ready to upload, or the S3 object the node copies.
#[derive(Debug)]
struct Package {
    code: Code,
    runtime: &'static str,
    handler: String,
    /// Values of one input row for the printed example (models only).
    example_features: Option<usize>,
}

#[derive(Debug)]
enum Code {
    Zip(Vec<u8>),
    S3 { bucket: String, key: String },
}

impl Code {
    /// CreateFunction's `Code` (UpdateFunctionCode takes the same members at its top).
    fn to_json(&self) -> Value {
        match self {
            Code::Zip(zip) => {
                json!({"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)})
            }
            Code::S3 { bucket, key } => json!({"S3Bucket": bucket, "S3Key": key}),
        }
    }

    fn describe(&self) -> String {
        match self {
            Code::Zip(zip) => human_bytes(zip.len() as u64),
            Code::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        }
    }
}

/// Optional model settings the `onnx` runtime reads next to the model.
const MODEL_CONFIG: &str = "lamina-model.json";
const POLL: Duration = Duration::from_millis(250);

pub async fn run(args: DeployArgs) -> anyhow::Result<()> {
    let package = match args.path.to_str().and_then(|p| p.strip_prefix("s3://")) {
        Some(location) => from_s3(location, args.runtime.as_deref(), args.handler.as_deref())?,
        None => package(&args.path, args.handler.as_deref())?,
    };
    let remote = Remote::new(&args.remote.endpoint, &args.remote.region)?;
    let name = query_value(&args.name);
    let code = package.code.to_json();

    let exists = match remote
        .get_json(&format!("/2015-03-31/functions/{name}"))
        .await
    {
        Ok(_) => true,
        Err(e) if not_found(&e) => false,
        Err(e) => return Err(e),
    };
    let mut settings = serde_json::Map::new();
    if let Some(m) = args.memory {
        settings.insert("MemorySize".into(), m.into());
    }
    if let Some(t) = args.timeout {
        settings.insert("Timeout".into(), t.into());
    }
    eprintln!(
        "{} {} ({}, {}) to {}",
        if exists { "updating" } else { "creating" },
        args.name,
        package.runtime,
        package.code.describe(),
        args.remote.endpoint
    );
    let (method, path, body) = if exists {
        (
            Method::PUT,
            format!("/2015-03-31/functions/{name}/code"),
            code,
        )
    } else {
        let mut create = json!({
            "FunctionName": args.name,
            "Runtime": package.runtime,
            "Handler": package.handler,
            // Lamina does not assume roles; the API requires one.
            "Role": "arn:aws:iam::000000000000:role/lamina-deploy",
            "Code": code,
        });
        if let Some(obj) = create.as_object_mut() {
            obj.extend(settings.clone());
        }
        (Method::POST, "/2015-03-31/functions".to_owned(), create)
    };
    let bytes = Bytes::from(serde_json::to_vec(&body)?);
    // The package is in memory three times until here (zip, base64, JSON).
    drop(body);
    let bar = upload_bar(bytes.len() as u64);
    remote.send(method, &path, bytes, Some(bar.clone())).await?;
    bar.finish_and_clear();
    if exists && !settings.is_empty() {
        wait_until_ready(&remote, &name, args.wait).await?;
        remote
            .send_json(
                Method::PUT,
                &format!("/2015-03-31/functions/{name}/configuration"),
                Some(&Value::Object(settings)),
            )
            .await?;
    }
    let arn = wait_until_ready(&remote, &name, args.wait).await?;
    eprintln!("{arn} is Active");

    let auth = if args.public { "NONE" } else { "AWS_IAM" };
    let url_path = format!("/2021-10-31/functions/{name}/url");
    let url = match remote.get_json(&url_path).await {
        Ok(config) if config["AuthType"] == auth => config["FunctionUrl"].clone(),
        Ok(_) => remote
            .send_json(Method::PUT, &url_path, Some(&json!({"AuthType": auth})))
            .await?["FunctionUrl"]
            .clone(),
        Err(e) if not_found(&e) => remote
            .send_json(Method::POST, &url_path, Some(&json!({"AuthType": auth})))
            .await?["FunctionUrl"]
            .clone(),
        Err(e) => return Err(e),
    };
    let url = url
        .as_str()
        .context("the server returned no FunctionUrl")?
        .to_owned();
    println!("{url}");
    eprintln!(
        "\ncall it:\n  {}",
        example_curl(&url, &package, auth, remote.region())
    );
    Ok(())
}

fn not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<RemoteError>()
        .is_some_and(|r| r.status == hyper::StatusCode::NOT_FOUND)
}

/// Polls GetFunction until the function is Active and its last update finished; returns
/// its ARN.
async fn wait_until_ready(remote: &Remote, name: &str, wait_secs: u64) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(wait_secs);
    loop {
        let f = remote
            .get_json(&format!("/2015-03-31/functions/{name}"))
            .await?;
        let c = &f["Configuration"];
        let state = c["State"].as_str().unwrap_or("Active");
        let update = c["LastUpdateStatus"].as_str().unwrap_or("Successful");
        if state == "Failed" || update == "Failed" {
            bail!(
                "the function failed: {}",
                c["StateReason"]
                    .as_str()
                    .or(c["LastUpdateStatusReason"].as_str())
                    .unwrap_or("no reason given")
            );
        }
        if state == "Active" && update == "Successful" {
            return Ok(c["FunctionArn"].as_str().unwrap_or(name).to_owned());
        }
        if Instant::now() >= deadline {
            bail!("the function is still {state} ({update}) after {wait_secs} s");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn upload_bar(len: u64) -> indicatif::ProgressBar {
    // Drawn only when stderr is a terminal.
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "uploading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Zips `path` the way its kind is deployed.
fn package(path: &Path, handler: Option<&str>) -> anyhow::Result<Package> {
    if path.is_dir() {
        return python_folder(path, handler);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| UsageError(format!("{} has no file name", path.display())))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("onnx") => {
            let mut files = vec![(file_name.to_owned(), bytes.clone())];
            let config = path.with_file_name(MODEL_CONFIG);
            if config.is_file() {
                files.push((MODEL_CONFIG.to_owned(), std::fs::read(&config)?));
            }
            Ok(Package {
                code: Code::Zip(zip_files(&files)?),
                runtime: "onnx",
                handler: file_name.to_owned(),
                example_features: row_width(&bytes),
            })
        }
        Some("wasm") => Ok(Package {
            code: Code::Zip(zip_files(&[("function.wasm".to_owned(), bytes)])?),
            runtime: "wasm",
            handler: "function.wasm".to_owned(),
            example_features: None,
        }),
        Some("py") => Ok(Package {
            handler: python_handler(&[file_name.to_owned()], handler)?,
            code: Code::Zip(zip_files(&[(file_name.to_owned(), bytes)])?),
            runtime: PYTHON,
            example_features: None,
        }),
        Some("zip") => from_zip(bytes, handler),
        _ => Err(UsageError(format!(
            "{} is not a .onnx model, a .wasm function, a .py handler, a folder of Python code or a .zip package",
            path.display()
        ))
        .into()),
    }
}

const PYTHON: &str = protocol::Runtime::Python314.as_str();

/// Folders a Python package never needs: caches, virtual environments, version control.
const SKIPPED_FOLDERS: &[&str] = &[
    "__pycache__",
    ".git",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
];

/// A folder of Python code, zipped with its layout kept (the handler's file at the root,
/// vendored packages beside it).
fn python_folder(dir: &Path, handler: Option<&str>) -> anyhow::Result<Package> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    let at_root = python_at_root(files.iter().map(|(name, _)| name));
    if at_root.is_empty() && handler.is_none() {
        return Err(UsageError(format!(
            "{} holds no .py file at its top: put the handler's file there",
            dir.display()
        ))
        .into());
    }
    Ok(Package {
        handler: python_handler(&at_root, handler)?,
        code: Code::Zip(zip_files(&files)?),
        runtime: PYTHON,
        example_features: None,
    })
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            if !SKIPPED_FOLDERS.contains(&name.as_str()) {
                collect_files(root, &path, out)?;
            }
        } else if !name.ends_with(".pyc") {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let relative = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            out.push((relative, bytes));
        }
    }
    Ok(())
}

/// The Python files at the top of a package, of its entries' paths.
fn python_at_root<'a>(paths: impl Iterator<Item = &'a String>) -> Vec<String> {
    paths
        .filter(|p| !p.contains('/') && p.ends_with(".py"))
        .cloned()
        .collect()
}

/// The handler given, else Lambda's default when `lambda_function.py` is there, else
/// `<file>.lambda_handler` of the one Python file at the package's top.
fn python_handler(at_root: &[String], given: Option<&str>) -> anyhow::Result<String> {
    if let Some(handler) = given {
        return Ok(handler.to_owned());
    }
    if at_root.iter().any(|n| n == "lambda_function.py") {
        return Ok("lambda_function.lambda_handler".to_owned());
    }
    match at_root {
        [only] => Ok(format!("{}.lambda_handler", only.trim_end_matches(".py"))),
        _ => Err(UsageError(format!(
            "which file holds the handler? The package has {} Python files at its top: say --handler module.function",
            at_root.len()
        ))
        .into()),
    }
}

/// An object on the node's S3 endpoint (`bucket/key`): its runtime and handler come from
/// the key's extension, or from --runtime and --handler.
fn from_s3(
    location: &str,
    runtime: Option<&str>,
    handler: Option<&str>,
) -> anyhow::Result<Package> {
    let Some((bucket, key)) = location
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
    else {
        return Err(UsageError(format!(
            "s3://{location} names no object: write s3://bucket/key"
        ))
        .into());
    };
    let file_name = key.rsplit('/').next().unwrap_or(key);
    let by_extension = match file_name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("onnx") => Some(("onnx", file_name.to_owned())),
        Some("wasm") => Some(("wasm", file_name.to_owned())),
        _ => None,
    };
    let runtime = match (runtime, &by_extension) {
        (Some("onnx"), _) => "onnx",
        (Some("wasm"), _) => "wasm",
        (Some(other), _) => {
            return Err(UsageError(format!("--runtime {other}: use onnx or wasm")).into());
        }
        (None, Some((r, _))) => r,
        (None, None) => {
            return Err(UsageError(format!(
                "{file_name} is not a .onnx or .wasm object: say --runtime onnx or --runtime wasm (and --handler, the file in the zip)"
            ))
            .into());
        }
    };
    let handler = match (handler, by_extension) {
        (Some(h), _) => h.to_owned(),
        (None, Some((_, name))) => name,
        (None, None) if runtime == "onnx" => "model.onnx".to_owned(),
        (None, None) => "function.wasm".to_owned(),
    };
    Ok(Package {
        code: Code::S3 {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        },
        runtime,
        handler,
        example_features: None,
    })
}

/// A package the user zipped: a model runtime if it holds a model, Wasm if it holds a
/// Wasm file, else Python if it holds Python code.
fn from_zip(zip: Vec<u8>, handler: Option<&str>) -> anyhow::Result<Package> {
    let mut archive = zip::ZipArchive::new(Cursor::new(&zip)).context("reading the zip")?;
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.map(|name| name.into_owned()))
        .collect::<Result<_, _>>()
        .context("reading the zip's entries")?;
    let pick = |ext: &str, preferred: &str| {
        names
            .iter()
            .find(|n| *n == preferred)
            .or_else(|| names.iter().find(|n| n.ends_with(ext)))
            .cloned()
    };
    if let Some(model) = pick(".onnx", "model.onnx") {
        let mut bytes = Vec::new();
        archive.by_name(&model)?.read_to_end(&mut bytes)?;
        return Ok(Package {
            example_features: row_width(&bytes),
            code: Code::Zip(zip),
            runtime: "onnx",
            handler: model,
        });
    }
    if let Some(wasm) = pick(".wasm", "function.wasm") {
        return Ok(Package {
            code: Code::Zip(zip),
            runtime: "wasm",
            handler: wasm,
            example_features: None,
        });
    }
    let at_root = python_at_root(names.iter());
    if !at_root.is_empty() {
        return Ok(Package {
            handler: python_handler(&at_root, handler)?,
            code: Code::Zip(zip),
            runtime: PYTHON,
            example_features: None,
        });
    }
    Err(UsageError("the zip holds no .onnx model, .wasm file or Python handler".into()).into())
}

fn zip_files(files: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(files.iter().any(|(_, b)| b.len() >= u32::MAX as usize));
    for (name, bytes) in files {
        writer.start_file(name.as_str(), options)?;
        writer.write_all(bytes)?;
    }
    Ok(writer.finish()?.into_inner())
}

/// How many values one row of the model's first input holds, when the model says.
/// The server validates the model; a model this cannot read just gets a generic example.
fn row_width(model: &[u8]) -> Option<usize> {
    let loaded = onnx_ops::load(model, &onnx_ops::LoadLimits::default()).ok()?;
    match loaded.inputs().first()?.shape.last()? {
        onnx_ops::Dim::Fixed(n) if *n > 0 && *n <= 4096 => Some(*n),
        _ => None,
    }
}

fn example_curl(url: &str, package: &Package, auth: &str, region: &str) -> String {
    let body = match (package.runtime, package.example_features) {
        ("onnx", Some(n)) => format!("{{\"input\": [{}]}}", vec!["0.0"; n].join(", ")),
        ("onnx", None) => "{\"input\": [0.0]}".to_owned(),
        _ => "{\"hello\": \"world\"}".to_owned(),
    };
    let signing = if auth == "AWS_IAM" {
        format!(
            "--aws-sigv4 'aws:amz:{region}:lambda' --user \"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY\" "
        )
    } else {
        String::new()
    };
    format!("curl {signing}-H 'content-type: application/json' -d '{body}' {url}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` as `name` in `dir`.
    fn temp_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    fn entries(code: &Code) -> Vec<String> {
        let Code::Zip(zip) = code else {
            panic!("not a zip: {code:?}");
        };
        let archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap_or_else(|e| panic!("{e}"));
        archive
            .file_names()
            .map(|n| {
                n.map(|name| name.into_owned())
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    #[test]
    fn python_files_and_folders_become_python_packages() {
        let dir = temp_dir();
        let p = package(
            &temp_file(&dir, "score.py", b"def lambda_handler(e, c): pass\n"),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (p.runtime, p.handler.as_str()),
            ("python3.14", "score.lambda_handler")
        );
        assert_eq!(entries(&p.code), vec!["score.py"]);

        let app = temp_dir();
        temp_file(&app, "lambda_function.py", b"");
        temp_file(&app, "helpers.py", b"");
        std::fs::create_dir_all(app.path().join("lib/__pycache__"))
            .unwrap_or_else(|e| panic!("{e}"));
        temp_file(&app, "lib/util.py", b"");
        temp_file(&app, "lib/__pycache__/util.cpython-314.pyc", b"");
        let p = package(app.path(), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.handler, "lambda_function.lambda_handler");
        assert_eq!(
            entries(&p.code),
            vec!["helpers.py", "lambda_function.py", "lib/util.py"]
        );

        std::fs::remove_file(app.path().join("lambda_function.py"))
            .unwrap_or_else(|e| panic!("{e}"));
        temp_file(&app, "other.py", b"");
        let err = package(app.path(), None).unwrap_err();
        assert!(err.to_string().contains("--handler"), "{err}");
        let p = package(app.path(), Some("other.handle")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.handler, "other.handle");
    }

    #[test]
    fn wasm_files_become_function_wasm() {
        let dir = temp_dir();
        let p =
            package(&temp_file(&dir, "app.wasm", b"\0asm"), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.runtime, p.handler.as_str()), ("wasm", "function.wasm"));
        assert_eq!(entries(&p.code), vec!["function.wasm"]);
    }

    #[test]
    fn models_keep_their_name_and_bring_their_config() {
        let dir = temp_dir();
        let path = temp_file(&dir, "iris.onnx", b"not really onnx");
        std::fs::write(path.with_file_name(MODEL_CONFIG), b"{}").unwrap_or_else(|e| panic!("{e}"));
        let p = package(&path, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.runtime, p.handler.as_str()), ("onnx", "iris.onnx"));
        let mut names = entries(&p.code);
        names.sort();
        assert_eq!(names, vec!["iris.onnx", MODEL_CONFIG]);
        assert_eq!(p.example_features, None);
    }

    #[test]
    fn zips_are_read_for_their_runtime() {
        let zip = zip_files(&[("model.onnx".into(), vec![1]), ("x.wasm".into(), vec![2])])
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = temp_dir();
        let p = package(&temp_file(&dir, "pkg.zip", &zip), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.runtime, p.handler.as_str()), ("onnx", "model.onnx"));
        let empty = zip_files(&[("README".into(), vec![])]).unwrap_or_else(|e| panic!("{e}"));
        assert!(package(&temp_file(&dir, "empty.zip", &empty), None).is_err());
        assert!(package(&temp_file(&dir, "notes.txt", b""), None).is_err());
    }

    #[test]
    fn s3_objects_take_runtime_and_handler_from_their_name_or_the_flags() {
        let p = from_s3("models/diabetes/v2.onnx", None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.runtime, p.handler.as_str()), ("onnx", "v2.onnx"));
        assert_eq!(
            p.code.to_json(),
            json!({"S3Bucket": "models", "S3Key": "diabetes/v2.onnx"})
        );
        let p =
            from_s3("b/pkg.zip", Some("wasm"), Some("app.wasm")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.runtime, p.handler.as_str()), ("wasm", "app.wasm"));
        assert!(from_s3("b/pkg.zip", None, None).is_err());
        assert!(from_s3("bucket-only", None, None).is_err());
        assert!(from_s3("b/m.onnx", Some("python3.12"), None).is_err());
    }

    #[test]
    fn the_example_signs_unless_public() {
        let p = Package {
            code: Code::Zip(vec![]),
            runtime: "onnx",
            handler: "model.onnx".into(),
            example_features: Some(3),
        };
        let signed = example_curl("http://x/", &p, "AWS_IAM", "us-east-1");
        assert!(
            signed.contains("--aws-sigv4 'aws:amz:us-east-1:lambda'"),
            "{signed}"
        );
        assert!(signed.contains("{\"input\": [0.0, 0.0, 0.0]}"), "{signed}");
        assert!(!example_curl("http://x/", &p, "NONE", "us-east-1").contains("sigv4"));
    }
}
