//! Information element numbers used by the decoder.
//!
//! NetFlow v9 field types 1–127 and IPFIX IANA information elements share numbers, so one table
//! serves both. Names follow the IANA IPFIX registry.

pub const OCTET_DELTA_COUNT: u16 = 1;
pub const PACKET_DELTA_COUNT: u16 = 2;
pub const PROTOCOL_IDENTIFIER: u16 = 4;
pub const IP_CLASS_OF_SERVICE: u16 = 5;
pub const TCP_CONTROL_BITS: u16 = 6;
pub const SOURCE_TRANSPORT_PORT: u16 = 7;
pub const SOURCE_IPV4_ADDRESS: u16 = 8;
pub const INGRESS_INTERFACE: u16 = 10;
pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
pub const EGRESS_INTERFACE: u16 = 14;
pub const IP_NEXT_HOP_IPV4_ADDRESS: u16 = 15;
pub const BGP_SOURCE_AS_NUMBER: u16 = 16;
pub const BGP_DESTINATION_AS_NUMBER: u16 = 17;
pub const BGP_NEXT_HOP_IPV4_ADDRESS: u16 = 18;
/// v9 `LAST_SWITCHED`; IPFIX `flowEndSysUpTime`. Milliseconds of exporter uptime.
pub const FLOW_END_SYS_UP_TIME: u16 = 21;
/// v9 `FIRST_SWITCHED`; IPFIX `flowStartSysUpTime`.
pub const FLOW_START_SYS_UP_TIME: u16 = 22;
pub const SOURCE_IPV6_ADDRESS: u16 = 27;
pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
/// v9 `ICMP_TYPE`, IPFIX `icmpTypeCodeIPv4`: `type << 8 | code`.
pub const ICMP_TYPE_CODE_IPV4: u16 = 32;
/// v9 `SAMPLING_INTERVAL`.
pub const SAMPLING_INTERVAL: u16 = 34;
pub const SAMPLING_ALGORITHM: u16 = 35;
/// v9 `FLOW_SAMPLER_ID`, IPFIX `samplerId`.
pub const SAMPLER_ID: u16 = 48;
/// v9 `FLOW_SAMPLER_RANDOM_INTERVAL`, IPFIX `samplerRandomInterval`.
pub const SAMPLER_RANDOM_INTERVAL: u16 = 50;
pub const VLAN_ID: u16 = 58;
pub const IP_VERSION: u16 = 60;
pub const FLOW_DIRECTION: u16 = 61;
pub const IP_NEXT_HOP_IPV6_ADDRESS: u16 = 62;
pub const BGP_NEXT_HOP_IPV6_ADDRESS: u16 = 63;
pub const OCTET_TOTAL_COUNT: u16 = 85;
pub const PACKET_TOTAL_COUNT: u16 = 86;
pub const ICMP_TYPE_CODE_IPV6: u16 = 139;
pub const FLOW_START_SECONDS: u16 = 150;
pub const FLOW_END_SECONDS: u16 = 151;
pub const FLOW_START_MILLISECONDS: u16 = 152;
pub const FLOW_END_MILLISECONDS: u16 = 153;
pub const FLOW_START_MICROSECONDS: u16 = 154;
pub const FLOW_END_MICROSECONDS: u16 = 155;
pub const FLOW_START_NANOSECONDS: u16 = 156;
pub const FLOW_END_NANOSECONDS: u16 = 157;
pub const FLOW_START_DELTA_MICROSECONDS: u16 = 158;
pub const FLOW_END_DELTA_MICROSECONDS: u16 = 159;
pub const SYSTEM_INIT_TIME_MILLISECONDS: u16 = 160;
pub const ICMP_TYPE_IPV4: u16 = 176;
pub const ICMP_CODE_IPV4: u16 = 177;
pub const ICMP_TYPE_IPV6: u16 = 178;
pub const ICMP_CODE_IPV6: u16 = 179;
pub const IP_DIFF_SERV_CODE_POINT: u16 = 195;
pub const DOT1Q_VLAN_ID: u16 = 243;
pub const SELECTOR_ID: u16 = 302;
pub const SAMPLING_PACKET_INTERVAL: u16 = 305;
pub const SAMPLING_PACKET_SPACE: u16 = 306;

/// IPFIX field length meaning "variable length, prefixed in the record" (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 0xFFFF;
