//! `refnet call SERVICE/METHOD`: any RPC of the contract, from the
//! descriptors compiled into refnet, with the request and the reply in the
//! proto3 JSON mapping; the same token and TLS handling as the other verbs.
//! For the RPCs no verb covers yet, and for scripts. A server stream prints
//! one JSON object per line.

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http,
};

use crate::{Connection, Desk, output};

/// Flags of `refnet call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    connection: Connection,
    /// The RPC: `IntakeService/GetReferral` (or `refnet.v1.IntakeService/GetReferral`); `--list` names them all.
    #[arg(required_unless_present = "list")]
    method: Option<String>,
    /// The request in the proto3 JSON mapping, or `@FILE` (`@-`: standard input).
    #[arg(long, default_value = "{}")]
    data: String,
    /// Print every RPC with its request and reply messages, and exit.
    #[arg(long)]
    list: bool,
    /// Stop a server stream after this many messages [default: follow it until the server ends it or Ctrl-C].
    #[arg(long)]
    limit: Option<usize>,
    /// A unary call: give up after this many seconds (DEADLINE_EXCEEDED). A stream: stop following it then.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
}

/// Every RPC of the contract.
fn methods() -> impl Iterator<Item = MethodDescriptor> {
    refnet_api::descriptor_pool()
        .services()
        .filter(|s| s.package_name() == "refnet.v1")
        .flat_map(|s| s.methods().collect::<Vec<_>>())
}

/// The RPC `name` names: `Service/Method`, with or without the package.
fn find(name: &str) -> anyhow::Result<MethodDescriptor> {
    let (service, method) = name
        .trim_start_matches('/')
        .rsplit_once('/')
        .ok_or_else(|| anyhow!("{name}: give SERVICE/METHOD, e.g. IntakeService/GetReferral"))?;
    let service = service.strip_prefix("refnet.v1.").unwrap_or(service);
    methods()
        .find(|m| m.parent_service().name() == service && m.name() == method)
        .ok_or_else(|| anyhow!("{name}: no such RPC (see `refnet call --list`)"))
}

/// Runs `refnet call`.
pub async fn call(args: CallArgs) -> anyhow::Result<()> {
    if args.list {
        let mut text = String::new();
        for m in methods() {
            let stream = if m.is_server_streaming() {
                "stream "
            } else {
                ""
            };
            text.push_str(&format!(
                "{}/{}  {} -> {stream}{}\n",
                m.parent_service().name(),
                m.name(),
                m.input().name(),
                m.output().name()
            ));
        }
        return output::emit(&text);
    }
    let Some(name) = args.method.as_deref() else {
        bail!("give SERVICE/METHOD or --list");
    };
    let method = find(name)?;
    if method.is_client_streaming() {
        bail!("{name} streams from the client; `refnet call` sends one message");
    }
    let text = match args.data.strip_prefix('@') {
        Some(path) => crate::file_or_stdin(path)?,
        None => args.data.clone(),
    };
    let mut de = serde_json::Deserializer::from_str(&text);
    let request = DynamicMessage::deserialize(method.input(), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .with_context(|| {
            format!(
                "the request is not a {} in JSON",
                method.input().full_name()
            )
        })?;

    let desk = Desk::connect(args.connection).await?;
    let mut grpc = tonic::client::Grpc::new(desk.channel.clone());
    grpc.ready()
        .await
        .map_err(|e| anyhow!("cannot reach refnet at {}: {e}", desk.server))?;
    let path: http::uri::PathAndQuery =
        format!("/{}/{}", method.parent_service().full_name(), method.name())
            .parse()
            .map_err(|e| anyhow!("{name}: {e}"))?;
    let mut call = tonic::Request::new(request);
    call.metadata_mut()
        .insert("authorization", desk.bearer.0.clone());
    let codec = DynamicCodec(method.output());
    let deadline = args
        .timeout
        .map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs(s));
    let until = |deadline: Option<tokio::time::Instant>| async move {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    if method.is_server_streaming() {
        let opened = tokio::select! {
            opened = grpc.server_streaming(call, path, codec) => opened,
            () = until(deadline) => return Ok(()),
        };
        let mut stream = opened
            .map_err(|s| anyhow!(output::status_text(&s)))?
            .into_inner();
        let mut seen = 0;
        while args.limit.is_none_or(|limit| seen < limit) {
            let next = tokio::select! {
                next = stream.message() => next,
                () = until(deadline) => break,
            };
            match next {
                Ok(Some(message)) => {
                    output::emit(&format!("{}\n", serde_json::to_string(&json(&message)?)?))?;
                    seen += 1;
                }
                Ok(None) => break,
                Err(status) => bail!(output::status_text(&status)),
            }
        }
        Ok(())
    } else {
        let answered = tokio::select! {
            answered = grpc.unary(call, path, codec) => answered,
            () = until(deadline) => bail!("DEADLINE_EXCEEDED: no answer within the timeout"),
        };
        let reply = answered
            .map_err(|s| anyhow!(output::status_text(&s)))?
            .into_inner();
        output::print_json(&json(&reply)?)
    }
}

/// `message` in the proto3 JSON mapping, proto field names, every field.
fn json(message: &DynamicMessage) -> anyhow::Result<serde_json::Value> {
    let options = prost_reflect::SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .stringify_64_bit_integers(false);
    Ok(message.serialize_with_options(serde_json::value::Serializer, &options)?)
}

/// A codec for messages known only by their descriptors: the request is
/// encoded as it is, the reply decoded as the method's output message.
#[derive(Clone)]
struct DynamicCodec(MessageDescriptor);

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder(self.0.clone())
    }
}

/// Encodes a request.
struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))
    }
}

/// Decodes a reply of the method's output type.
struct DynamicDecoder(MessageDescriptor);

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding the reply: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcs_are_found_with_or_without_the_package() {
        let m = find("IntakeService/GetReferral").expect("found");
        assert_eq!(m.full_name(), "refnet.v1.IntakeService.GetReferral");
        assert_eq!(
            find("/refnet.v1.RoutingService/WatchInbox")
                .expect("found")
                .name(),
            "WatchInbox"
        );
        assert!(find("IntakeService/Nothing").is_err());
        assert!(find("GetReferral").is_err());
    }

    #[test]
    fn every_service_of_the_contract_is_callable() {
        let services: std::collections::BTreeSet<String> = methods()
            .map(|m| m.parent_service().full_name().to_owned())
            .collect();
        for name in refnet_api::SERVICE_NAMES {
            assert!(services.contains(name), "{name}");
        }
    }
}
