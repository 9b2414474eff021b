//! Poison messages for the fault suite: payloads no worker can ever decode
//! (malformed JSON, an unknown command name, an oversize payload, a wrong
//! encoding). Each must end in the dead-letter topic with a reason while
//! the partition keeps flowing. Only log targets can send them: HTTP ingest
//! refuses them before they reach the log.

use super::workload::Generated;
use crate::domain::codec::MAX_PAYLOAD_BYTES;

/// How many kinds of poison [`make`] knows.
pub const VARIANTS: u64 = 6;

/// Turns `g` (id and user already chosen) into poison variant `variant`.
pub fn make(variant: u64, mut g: Generated) -> Generated {
    let (id, user) = (&g.interaction_id, &g.user_id);
    let valid = format!(
        r#"{{"interaction_id":"{id}","user_id":"{user}","interaction_type":"click","target":{{"id":"p","type":"post"}}}}"#
    );
    match variant % VARIANTS {
        // Truncated JSON.
        0 => {
            g.body = format!(r#"{{"interaction_id":"{id}","user_id":"{user}","interaction_ty"#)
                .into_bytes()
        }
        // A command this service does not know.
        1 => {
            g.properties.insert("name".into(), "ForgetUser".into());
            g.body = valid.into_bytes();
        }
        // Over the payload limit.
        2 => {
            let pad = "x".repeat(MAX_PAYLOAD_BYTES + 1024);
            g.body = format!(
                r#"{{"interaction_id":"{id}","user_id":"{user}","interaction_type":"click","target":{{"id":"p","type":"post"}},"pad":"{pad}"}}"#
            )
            .into_bytes();
        }
        // Declared MessagePack, sent JSON.
        3 => {
            g.properties
                .insert("content-type".into(), "application/msgpack".into());
            g.body = b"\xc1\xc1\xc1"
                .iter()
                .chain(valid.as_bytes())
                .copied()
                .collect();
        }
        // An encoding the service does not accept.
        4 => {
            g.properties
                .insert("content-type".into(), "application/xml".into());
            g.body = format!("<interaction id=\"{id}\"/>").into_bytes();
        }
        // Invalid UTF-8 inside a JSON string.
        _ => {
            let mut body = format!(r#"{{"interaction_id":"{id}","user_id":""#).into_bytes();
            body.extend_from_slice(b"\xff\xfe\xfd");
            body.extend_from_slice(
                br#"","interaction_type":"click","target":{"id":"p","type":"post"}}"#,
            );
            g.body = body;
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::codec::{decode_command, MessageMeta};
    use crate::loadgen::workload::Kind;

    #[test]
    fn every_variant_is_refused_by_the_real_decoder() {
        for v in 0..VARIANTS {
            let g = make(
                v,
                Generated::new_for_test(Kind::Poison, format!("id-{v}"), "u".into()),
            );
            let meta = MessageMeta {
                key: Some("u"),
                properties: Some(&g.properties),
                identity: "test:0:1",
                published_at: chrono::Utc::now(),
            };
            let r = decode_command(&g.body, &meta);
            assert!(r.is_err(), "variant {v} decoded: {r:?}");
        }
    }
}
