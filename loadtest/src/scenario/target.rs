//! Which server the clients of a run talk to and how: the protocol and URL that `--target`,
//! `--transport`, `--format`, `--ws-url` and `--sse-url` ask for. Opens nothing.

use anyhow::{anyhow, bail};

use crate::cli::{Format, RunArgs, Target, Transport};
use crate::client::Proto;

fn ws_url(args: &RunArgs) -> anyhow::Result<String> {
    args.ws_url
        .clone()
        .ok_or_else(|| anyhow!("--ws-url is required for --target {}", args.target.name()))
}

/// Protocol and URL the clients of the run use.
pub fn endpoint(args: &RunArgs) -> anyhow::Result<(Proto, String)> {
    if args.format == Format::Protobuf
        && (args.target, args.transport) != (Target::Herald, Transport::Ws)
    {
        bail!(
            "--format protobuf: only Herald over WebSocket speaks Protobuf, not --target {} \
             --transport {}",
            args.target.name(),
            args.transport.name()
        );
    }
    match (args.transport, args.target) {
        (Transport::Ws, Target::Herald) if args.format == Format::Protobuf => {
            Ok((Proto::HeraldProtobuf, ws_url(args)?))
        }
        (Transport::Ws, target) => Ok((Proto::from(target), ws_url(args)?)),
        (Transport::Sse, Target::Herald) => {
            let url = match (&args.sse_url, &args.ws_url) {
                (Some(url), _) => url.clone(),
                (None, Some(ws)) => sse_url_from(ws)?,
                (None, None) => bail!("--sse-url or --ws-url is required with --transport sse"),
            };
            Ok((Proto::HeraldSse, url))
        }
        (Transport::Sse, target) => bail!(
            "--transport sse: only Herald serves Server-Sent Events, not --target {}",
            target.name()
        ),
    }
}

/// `ws://H/connection/websocket` → `http://H/connection/sse` (a bare `ws://H/` gets the path).
fn sse_url_from(ws: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(ws).map_err(|e| anyhow!("bad --ws-url {ws:?}: {e}"))?;
    if !matches!(url.scheme(), "ws" | "http") {
        bail!("cannot derive a plain HTTP event stream URL from {ws:?}; pass --sse-url");
    }
    let path = match url.path() {
        "" | "/" => "/connection/sse".to_owned(),
        p => match p.strip_suffix("/connection/websocket") {
            Some(prefix) => format!("{prefix}/connection/sse"),
            None => bail!("cannot derive the event stream URL from {ws:?}; pass --sse-url"),
        },
    };
    url.set_path(&path);
    url.set_scheme("http")
        .map_err(|()| anyhow!("cannot derive an http:// URL from {ws:?}"))?;
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_urls_are_derived_from_websocket_urls() {
        let u = |s| sse_url_from(s).unwrap();
        assert_eq!(
            u("ws://127.0.0.1:8000/connection/websocket"),
            "http://127.0.0.1:8000/connection/sse"
        );
        assert_eq!(
            u("ws://h:1/prefix/connection/websocket?x=1"),
            "http://h:1/prefix/connection/sse?x=1"
        );
        assert_eq!(u("ws://h:1/"), "http://h:1/connection/sse");
        assert!(sse_url_from("wss://h/connection/websocket").is_err());
        assert!(sse_url_from("ws://h/socket.io/").is_err());
    }

    /// The run arguments of a command line with a Herald WebSocket URL and `extra`.
    fn parse(extra: &[&str]) -> crate::cli::RunArgs {
        use clap::Parser;
        let mut argv = vec![
            "herald-loadtest",
            "--ws-url",
            "ws://h:1/connection/websocket",
        ];
        argv.extend_from_slice(extra);
        crate::cli::Cli::parse_from(argv).run
    }

    #[test]
    fn sse_needs_the_herald_target() {
        let (proto, url) = endpoint(&parse(&["--transport", "sse"])).unwrap();
        assert_eq!(
            (proto, url.as_str()),
            (Proto::HeraldSse, "http://h:1/connection/sse")
        );
        let args = parse(&[
            "--transport",
            "sse",
            "--sse-url",
            "http://x:2/connection/sse",
        ]);
        assert_eq!(endpoint(&args).unwrap().1, "http://x:2/connection/sse");
        let e = endpoint(&parse(&["--transport", "sse", "--target", "ws"])).unwrap_err();
        assert!(e.to_string().contains("only Herald"), "{e}");
        assert_eq!(endpoint(&parse(&[])).unwrap().0, Proto::Herald);
    }

    #[test]
    fn protobuf_needs_herald_over_websocket() {
        let (proto, url) = endpoint(&parse(&["--format", "protobuf"])).unwrap();
        assert_eq!(
            (proto, url.as_str()),
            (Proto::HeraldProtobuf, "ws://h:1/connection/websocket")
        );
        for other in [&["--transport", "sse"][..], &["--target", "socketio"]] {
            let mut argv = vec!["--format", "protobuf"];
            argv.extend_from_slice(other);
            let e = endpoint(&parse(&argv)).unwrap_err();
            assert!(e.to_string().contains("only Herald over WebSocket"), "{e}");
        }
    }
}
