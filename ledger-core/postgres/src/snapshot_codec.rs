//! The binary form of a snapshot: a SKU's state and its remembered keys, field by field, with
//! lengths before strings and a byte for each optional field. A hot SKU's state holds every
//! reservation it ever had (tens of thousands), and loading it is on the path of the first
//! command after a start: as JSON it took most of that load, this form decodes several times
//! faster and is a third of the size.
//!
//! Layout (all integers little-endian; `str` is a u32 length and UTF-8 bytes; `opt<T>` is a
//! byte 0 or 1 and then T):
//! - sku: str, on_hand: u64, reserved: u64, reorder_point: u64, version: opt<u64>,
//!   open_reservation_count: u64
//! - locations: u32 count, then in name order: name: str, on_hand: u64, reserved: u64,
//!   reorder_point: u64, in_transit: u64
//! - reservations: u32 count, then in id order: id: str, order_id: opt<str>, quantity: u64,
//!   ttl_seconds: opt<u64>, expires_at: opt<i64 microseconds since the epoch>, status: u8,
//!   location: u32 index into the locations above (a hot SKU has many reservations and few
//!   locations)
//! - recent keys: u32 count, then key: str, first: u64, last: u64.
//! - holders: u32 count, then reservation id: str, principal: str.
//! - chain head: the hash of the last event folded (32 bytes), its recorded time (i64
//!   microseconds since the epoch).
//! - in_transit: u64; transfers: u32 count, then in id order: id: str, from: u32 index,
//!   to: u32 index, quantity: u64, reference: opt<str>, status: u8, received: opt<u64>.
//! - catalogue: opt<name: str, unit: str, attributes: u32 count, then name: str, value: str>;
//!   discontinued: u8.

use chrono::{DateTime, Utc};
use ledger_domain::chain::EVENT_HASH_BYTES;
use ledger_domain::{
    CatalogueEntry, EventHash, LocationStock, Reservation, ReservationStatus, Sku, SkuState,
    Transfer, TransferStatus,
};
use std::collections::BTreeMap;

/// A snapshot body as its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotBody {
    pub state: SkuState,
    pub recent_keys: Vec<(String, u64, u64)>,
    pub holders: Vec<(String, String)>,
    pub head: ChainHead,
}

/// The last event folded into a snapshot, as the hash chain needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub hash: EventHash,
    pub recorded_at: DateTime<Utc>,
}

pub fn encode(
    state: &SkuState,
    recent_keys: &[(String, u64, u64)],
    holders: &[(String, String)],
    head: ChainHead,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + state.reservations.len() * 64);
    put_str(&mut out, state.sku.as_str());
    put_u64(&mut out, state.on_hand);
    put_u64(&mut out, state.reserved);
    put_u64(&mut out, state.reorder_point);
    put_option(&mut out, state.version, put_u64);
    put_u64(&mut out, state.open_reservation_count);
    put_u32(&mut out, state.locations.len());
    let mut index = std::collections::HashMap::with_capacity(state.locations.len());
    for (position, (name, stock)) in state.locations.iter().enumerate() {
        index.insert(name.as_str(), position);
        put_str(&mut out, name);
        put_u64(&mut out, stock.on_hand);
        put_u64(&mut out, stock.reserved);
        put_u64(&mut out, stock.reorder_point);
        put_u64(&mut out, stock.in_transit);
    }
    put_u32(&mut out, state.reservations.len());
    for reservation in state.reservations.values() {
        put_str(&mut out, &reservation.reservation_id);
        put_option(&mut out, reservation.order_id.as_deref(), put_str);
        put_u64(&mut out, reservation.quantity);
        put_option(&mut out, reservation.ttl_seconds, put_u64);
        put_option(
            &mut out,
            reservation
                .expires_at
                .map(|moment| moment.timestamp_micros()),
            |out, micros| out.extend_from_slice(&micros.to_le_bytes()),
        );
        out.push(status_byte(reservation.status));
        let location = index
            .get(reservation.location.as_str())
            .copied()
            .expect("a reservation's location has balances in the state");
        put_u32(&mut out, location);
    }
    put_u32(&mut out, recent_keys.len());
    for (key, first, last) in recent_keys {
        put_str(&mut out, key);
        put_u64(&mut out, *first);
        put_u64(&mut out, *last);
    }
    put_u32(&mut out, holders.len());
    for (reservation_id, holder) in holders {
        put_str(&mut out, reservation_id);
        put_str(&mut out, holder);
    }
    out.extend_from_slice(head.hash.as_bytes());
    out.extend_from_slice(&head.recorded_at.timestamp_micros().to_le_bytes());
    put_u64(&mut out, state.in_transit);
    put_u32(&mut out, state.transfers.len());
    let place = |name: &str| {
        index
            .get(name)
            .copied()
            .expect("a transfer's locations have balances in the state")
    };
    for transfer in state.transfers.values() {
        put_str(&mut out, &transfer.transfer_id);
        put_u32(&mut out, place(&transfer.from_location));
        put_u32(&mut out, place(&transfer.to_location));
        put_u64(&mut out, transfer.quantity);
        put_option(&mut out, transfer.reference.as_deref(), put_str);
        out.push(match transfer.status {
            TransferStatus::InTransit => 0,
            TransferStatus::Received => 1,
            TransferStatus::Cancelled => 2,
        });
        put_option(&mut out, transfer.quantity_received, put_u64);
    }
    put_option(&mut out, state.catalogue.as_ref(), |out, entry| {
        put_str(out, &entry.name);
        put_str(out, &entry.unit);
        put_u32(out, entry.attributes.len());
        for (name, value) in &entry.attributes {
            put_str(out, name);
            put_str(out, value);
        }
    });
    out.push(u8::from(state.discontinued));
    out
}

/// The body back, or `None` when the bytes are not a snapshot of this layout (then the loader
/// replays the stream instead).
pub fn decode(bytes: &[u8]) -> Option<SnapshotBody> {
    let mut input = Input { bytes, at: 0 };
    let sku = Sku::parse(input.str()?).ok()?;
    let mut state = SkuState::new(sku);
    state.on_hand = input.u64()?;
    state.reserved = input.u64()?;
    state.reorder_point = input.u64()?;
    state.version = input.option(Input::u64)?;
    state.open_reservation_count = input.u64()?;
    let count = input.u32()?;
    let mut names = Vec::with_capacity(count.min(bytes.len()));
    for _ in 0..count {
        let name = input.str()?.to_owned();
        let stock = LocationStock {
            on_hand: input.u64()?,
            reserved: input.u64()?,
            reorder_point: input.u64()?,
            in_transit: input.u64()?,
        };
        state.locations.insert(name.clone(), stock);
        names.push(name);
    }
    let count = input.u32()?;
    let mut reservations = Vec::with_capacity(count.min(bytes.len()));
    for _ in 0..count {
        let reservation_id = input.str()?.to_owned();
        let reservation = Reservation {
            reservation_id: reservation_id.clone(),
            order_id: input.option(|input| input.str().map(str::to_owned))?,
            quantity: input.u64()?,
            ttl_seconds: input.option(Input::u64)?,
            expires_at: input.option(|input| {
                let micros = i64::from_le_bytes(input.take(8)?.try_into().ok()?);
                DateTime::<Utc>::from_timestamp_micros(micros)
            })?,
            status: status_of(input.byte()?)?,
            location: names.get(input.u32()?)?.clone(),
        };
        reservations.push((reservation_id, reservation));
    }
    // Encoded in id order, so the map is built in one pass.
    state.reservations = BTreeMap::from_iter(reservations);
    let count = input.u32()?;
    let mut recent_keys = Vec::with_capacity(count.min(bytes.len()));
    for _ in 0..count {
        recent_keys.push((input.str()?.to_owned(), input.u64()?, input.u64()?));
    }
    let count = input.u32()?;
    let mut holders = Vec::with_capacity(count.min(bytes.len()));
    for _ in 0..count {
        holders.push((input.str()?.to_owned(), input.str()?.to_owned()));
    }
    let head = ChainHead {
        hash: EventHash::from_slice(input.take(EVENT_HASH_BYTES)?)?,
        recorded_at: DateTime::<Utc>::from_timestamp_micros(i64::from_le_bytes(
            input.take(8)?.try_into().ok()?,
        ))?,
    };
    state.in_transit = input.u64()?;
    let count = input.u32()?;
    let mut transfers = Vec::with_capacity(count.min(bytes.len()));
    for _ in 0..count {
        let transfer_id = input.str()?.to_owned();
        let transfer = Transfer {
            transfer_id: transfer_id.clone(),
            from_location: names.get(input.u32()?)?.clone(),
            to_location: names.get(input.u32()?)?.clone(),
            quantity: input.u64()?,
            reference: input.option(|input| input.str().map(str::to_owned))?,
            status: match input.byte()? {
                0 => TransferStatus::InTransit,
                1 => TransferStatus::Received,
                2 => TransferStatus::Cancelled,
                _ => return None,
            },
            quantity_received: input.option(Input::u64)?,
        };
        transfers.push((transfer_id, transfer));
    }
    state.transfers = BTreeMap::from_iter(transfers);
    state.catalogue = input.option(|input| {
        let name = input.str()?.to_owned();
        let unit = input.str()?.to_owned();
        let count = input.u32()?;
        let mut attributes = BTreeMap::new();
        for _ in 0..count {
            attributes.insert(input.str()?.to_owned(), input.str()?.to_owned());
        }
        Some(CatalogueEntry {
            name,
            unit,
            attributes,
        })
    })?;
    state.discontinued = match input.byte()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    (input.at == bytes.len()).then_some(SnapshotBody {
        state,
        recent_keys,
        holders,
        head,
    })
}

fn status_byte(status: ReservationStatus) -> u8 {
    match status {
        ReservationStatus::Open => 0,
        ReservationStatus::Released => 1,
        ReservationStatus::Expired => 2,
        ReservationStatus::Confirmed => 3,
    }
}

fn status_of(byte: u8) -> Option<ReservationStatus> {
    Some(match byte {
        0 => ReservationStatus::Open,
        1 => ReservationStatus::Released,
        2 => ReservationStatus::Expired,
        3 => ReservationStatus::Confirmed,
        _ => return None,
    })
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    let value = u32::try_from(value).expect("snapshot collections stay below 2^32 entries");
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    put_u32(out, value.len());
    out.extend_from_slice(value.as_bytes());
}

fn put_option<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put(out, value);
        }
    }
}

struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(length)?;
        let taken = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }

    fn str(&mut self) -> Option<&'a str> {
        let length = self.u32()?;
        std::str::from_utf8(self.take(length)?).ok()
    }

    fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.byte()? {
            0 => Some(None),
            1 => read(self).map(Some),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_state_with_every_kind_of_reservation_round_trips() {
        let mut state = SkuState::new(Sku::parse("SHOE-42").unwrap());
        state.on_hand = 10;
        state.reserved = 3;
        state.reorder_point = 2;
        state.version = Some(7);
        state.open_reservation_count = 1;
        for (name, on_hand, reserved) in [("default", 4, 3), ("store-12", 6, 0)] {
            state.locations.insert(
                name.to_owned(),
                ledger_domain::LocationStock {
                    on_hand,
                    reserved,
                    reorder_point: 1,
                    in_transit: 2,
                },
            );
        }
        state.in_transit = 4;
        for (index, status) in [
            TransferStatus::InTransit,
            TransferStatus::Received,
            TransferStatus::Cancelled,
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("t-{index}");
            state.transfers.insert(
                id.clone(),
                Transfer {
                    transfer_id: id,
                    from_location: "default".to_owned(),
                    to_location: "store-12".to_owned(),
                    quantity: 2,
                    reference: (index == 0).then(|| "DN-1".to_owned()),
                    status,
                    quantity_received: (status == TransferStatus::Received).then_some(1),
                },
            );
        }
        state.catalogue = Some(CatalogueEntry {
            name: "Trail shoe".to_owned(),
            unit: "pair".to_owned(),
            attributes: [("colour".to_owned(), "blue".to_owned())].into(),
        });
        state.discontinued = true;
        for (index, status) in [
            ReservationStatus::Open,
            ReservationStatus::Released,
            ReservationStatus::Expired,
            ReservationStatus::Confirmed,
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("r-{index}");
            state.reservations.insert(
                id.clone(),
                Reservation {
                    reservation_id: id,
                    order_id: (index % 2 == 0).then(|| format!("order-{index}")),
                    quantity: 3,
                    ttl_seconds: (index != 1).then_some(60),
                    expires_at: (index != 1)
                        .then(|| Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap()),
                    status,
                    location: if index == 0 { "default" } else { "store-12" }.to_owned(),
                },
            );
        }
        let keys = vec![("k1".to_owned(), 3, 4), ("k2".to_owned(), 5, 5)];
        let holders = vec![("r-0".to_owned(), "checkout".to_owned())];
        let head = ChainHead {
            hash: EventHash([7; 32]),
            recorded_at: Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap()
                + chrono::Duration::microseconds(6),
        };
        let bytes = encode(&state, &keys, &holders, head);
        let body = decode(&bytes).expect("decodes");
        assert_eq!(
            body,
            SnapshotBody {
                state,
                recent_keys: keys,
                holders,
                head
            }
        );
    }

    #[test]
    fn truncated_or_trailing_bytes_are_not_a_snapshot() {
        let state = SkuState::new(Sku::parse("A").unwrap());
        let head = ChainHead {
            hash: EventHash::GENESIS,
            recorded_at: Utc::now(),
        };
        let bytes = encode(&state, &[], &[], head);
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_none());
    }
}
