//! Replays datagrams through the SRT listener and the connections it opens, without sockets
//! or tasks, driving them the way srt-tokio does: the `srt_listener` fuzz target and its
//! corpus test use it to throw hostile packets at the vendored srt-protocol.
//!
//! Input: datagrams as `[peer: u8][len: u8][bytes; len]...`, from one of four peers; time
//! advances 10 ms a datagram. Handshakes reach past the SYN cookie because each peer's
//! conclusions carry the cookie the listener gave it, as a real caller's would. Connection
//! requests are accepted and dropped in turn.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use srt_protocol::connection::{DuplexConnection, Input as ConnInput};
use srt_protocol::listener::{
    AccessControlResponse, Action, Input, MultiplexListener, ResultOf, SessionId,
};
use srt_protocol::packet::{ControlTypes, Packet, ReceivePacketError, ShakeType};
use srt_protocol::settings::ConnInitSettings;

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub datagrams: usize,
    pub unparsed: usize,
    pub access_requests: usize,
    pub opened: usize,
    pub delegated: usize,
}

/// Replays `data` (see the module docs).
pub fn replay(data: &[u8]) -> Replayed {
    let mut out = Replayed::default();
    let start = Instant::now();
    let local = SocketAddr::from(([127, 0, 0, 1], 9000));
    let mut listener = MultiplexListener::new(start, local, ConnInitSettings::default());
    let mut cookies: HashMap<SocketAddr, i32> = HashMap::new();
    let mut connections: HashMap<SocketAddr, DuplexConnection> = HashMap::new();
    let mut now = start;
    let mut rest = data;
    let mut accept = false;
    while rest.len() >= 2 {
        let peer = SocketAddr::from(([10, 0, 0, rest[0] % 4], 5000));
        let len = usize::from(rest[1]).min(rest.len() - 2);
        let datagram = &rest[2..2 + len];
        rest = &rest[2 + len..];
        now += Duration::from_millis(10);
        out.datagrams += 1;

        let parsed = Packet::parse(&mut &datagram[..], false).map(|mut packet| {
            if let Packet::Control(control) = &mut packet {
                if let ControlTypes::Handshake(shake) = &mut control.control_type {
                    if shake.shake_type == ShakeType::Conclusion {
                        if let Some(cookie) = cookies.get(&peer) {
                            shake.syn_cookie = *cookie;
                        }
                    }
                }
            }
            packet
        });
        out.unparsed += usize::from(parsed.is_err());
        let mut input = Input::Packet(parsed.map(|p| (p, peer)).map_err(ReceivePacketError::Parse));
        // Drive the listener as srt-tokio does until it waits for input again.
        for _ in 0..64 {
            let action = listener.handle_input(now, input);
            input = match action {
                Action::SendPacket((packet, to)) => {
                    if let Packet::Control(control) = &packet {
                        if let ControlTypes::Handshake(shake) = &control.control_type {
                            cookies.insert(to, shake.syn_cookie);
                        }
                    }
                    Input::Success(ResultOf::SendPacket(to))
                }
                Action::RequestAccess(id, _) => {
                    out.access_requests += 1;
                    // Accept and refuse in turn, as the ingest's checks would.
                    accept = !accept;
                    let response = if accept {
                        AccessControlResponse::Accepted(None)
                    } else {
                        AccessControlResponse::Dropped
                    };
                    Input::AccessResponse(Some((id, response)))
                }
                Action::RejectConnection(id, _) => Input::Success(ResultOf::RejectConnection(id)),
                Action::OpenConnection(id, boxed) => {
                    let (_, connection) = *boxed;
                    connections.insert(id.0, DuplexConnection::new(connection));
                    out.opened += 1;
                    Input::Success(ResultOf::OpenConnection(id))
                }
                Action::DelegatePacket(id, packet) => {
                    out.delegated += 1;
                    if let Some(connection) = connections.get_mut(&id.0) {
                        let _ = connection.handle_input(now, ConnInput::Packet(Ok(packet)));
                        let _ = connection.handle_input(now, ConnInput::Timer);
                    }
                    Input::Success(ResultOf::DelegatePacket(id))
                }
                Action::DropConnection(id) => {
                    connections.remove(&id.0);
                    Input::Success(ResultOf::DropConnection(SessionId(id.0)))
                }
                Action::UpdateStatistics(_) => Input::Success(ResultOf::UpdateStatistics),
                Action::WaitForInput | Action::Close => break,
            };
        }
        let _ = listener.handle_input(now, Input::Timer);
    }
    out
}
