//! The Prometheus recorder (logging is in `logging.rs`).

use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Install the global metrics recorder and describe nmsd's metrics.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        // Real histograms (not summaries) so Grafana can aggregate across instances.
        .set_buckets_for_metric(
            Matcher::Full("nmsd_sink_flush_duration_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )
        .context("histogram buckets")?
        .set_buckets_for_metric(
            Matcher::Full("nmsd_snmp_poll_duration_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ],
        )
        .context("histogram buckets")?
        .set_buckets_for_metric(
            Matcher::Full("nmsd_flow_batch_records".into()),
            &[1.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0],
        )
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    describe();
    metrics::gauge!(
        "nmsd_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        // Both set by build.rs: the commit built and the compiler Cargo used.
        "commit" => env!("NMSD_GIT_COMMIT"),
        "rustc" => env!("NMSD_RUSTC_VERSION"),
    )
    .set(1.0);
    Ok(handle)
}

/// The recorder needs periodic upkeep when it is rendered by us rather than its own listener
/// (it drains histogram buckets then).
pub async fn upkeep(handle: PrometheusHandle) {
    let mut t = tokio::time::interval(Duration::from_secs(5));
    loop {
        t.tick().await;
        handle.run_upkeep();
    }
}

fn describe() {
    use metrics::{describe_counter as c, describe_gauge as g, describe_histogram as h};
    c!(
        "nmsd_flow_datagrams_received_total",
        "Export datagrams read from a socket."
    );
    c!(
        "nmsd_flow_bytes_received_total",
        "Bytes of export datagrams read from a socket."
    );
    c!(
        "nmsd_flow_socket_kernel_drops_total",
        "Datagrams the kernel dropped on a full socket buffer (SO_MEMINFO, read every second)."
    );
    c!(
        "nmsd_flow_datagrams_oversize_total",
        "Datagrams longer than max_datagram_size (truncated)."
    );
    c!(
        "nmsd_flow_receive_errors_total",
        "recvmmsg failures other than timeouts."
    );
    c!(
        "nmsd_sflow_datagrams_total",
        "sFlow datagrams received by an sflow source."
    );
    c!(
        "nmsd_sflow_datagrams_malformed_total",
        "sFlow datagrams that did not decode (samples before the damage are kept), by kind."
    );
    c!(
        "nmsd_sflow_flow_samples_total",
        "sFlow flow samples (compact and expanded) received."
    );
    c!(
        "nmsd_sflow_flow_samples_undecoded_total",
        "sFlow flow samples whose sampled packet did not decode or was of an unsupported header protocol."
    );
    c!(
        "nmsd_sflow_interface_samples_total",
        "sFlow counter samples (interface counters) received."
    );
    c!(
        "nmsd_sflow_datagrams_lost_total",
        "sFlow datagrams missing from an agent's sequence, per agent and sub-agent."
    );
    c!(
        "nmsd_sflow_samples_dropped_by_agent_total",
        "Samples an sFlow agent reports it dropped (growth of its drops counters), per agent and sub-agent."
    );
    c!(
        "nmsd_sflow_agents_untracked_total",
        "sFlow datagrams from agents beyond max_agents (decoded, their loss not tracked)."
    );
    c!(
        "nmsd_packet_frames_total",
        "Frames read by a packet source (capture: as read; pcap_file: when its file is done)."
    );
    c!(
        "nmsd_capture_kernel_drops_total",
        "Frames the kernel dropped before a capture source read them (PACKET_STATISTICS, read every second)."
    );
    c!(
        "nmsd_packet_frames_malformed_total",
        "Frames a packet source skipped because they did not decode, by kind."
    );
    c!(
        "nmsd_packet_flows_total",
        "Flow records a packet source's flow table emitted."
    );
    c!(
        "nmsd_flow_table_evicted_total",
        "Flows a packet source's full flow table reported early to make room for a new one."
    );
    c!(
        "nmsd_packet_tcp_syn_total",
        "TCP SYN segments without ACK in a packet source's flows (connection attempts)."
    );
    c!(
        "nmsd_packet_tcp_syn_ack_total",
        "TCP SYN+ACK segments in a packet source's flows (accepted connections)."
    );
    c!(
        "nmsd_packet_tcp_rst_total",
        "TCP RST segments in a packet source's flows."
    );
    c!(
        "nmsd_packet_icmp_unreachable_total",
        "ICMP and ICMPv6 destination unreachable messages in a packet source's flows."
    );
    g!(
        "nmsd_flow_socket_receive_buffer_bytes",
        "SO_RCVBUF granted by the kernel (twice the usable size)."
    );
    g!(
        "nmsd_ring_capacity_batches",
        "Capacity of a receive ring, in batches."
    );
    g!(
        "nmsd_ring_occupancy_batches",
        "Batches waiting in a receive ring."
    );
    c!(
        "nmsd_ring_dropped_datagrams_total",
        "Datagrams dropped because a receive ring was full."
    );
    c!(
        "nmsd_flow_datagrams_decoded_total",
        "Datagrams decoded, by export version."
    );
    c!(
        "nmsd_flow_records_decoded_total",
        "Flow records decoded, by export version."
    );
    c!("nmsd_flow_decode_errors_total", "Decode problems, by kind.");
    c!(
        "nmsd_flow_datagrams_malformed_total",
        "Datagrams with at least one decode problem."
    );
    c!(
        "nmsd_flow_payload_bytes_decoded_total",
        "Datagram bytes handed to the decoder."
    );
    c!(
        "nmsd_flow_options_records_total",
        "Options data records read (sampling, clock)."
    );
    c!(
        "nmsd_flow_templates_learned_total",
        "Templates received new or changed."
    );
    c!(
        "nmsd_flow_templates_removed_total",
        "Templates expired or withdrawn."
    );
    g!("nmsd_flow_templates", "Templates known, per worker.");
    g!(
        "nmsd_flow_exporter_domains",
        "Exporter domains tracked, per worker."
    );
    c!(
        "nmsd_flow_sets_without_template_total",
        "Data sets whose template was unknown: buffered, replayed later, or dropped."
    );
    c!(
        "nmsd_flow_sequence_lost_flows_total",
        "Flows missing per v5/IPFIX sequence numbers."
    );
    c!(
        "nmsd_flow_sequence_lost_datagrams_total",
        "Export datagrams missing per NetFlow v9 sequence numbers."
    );
    c!(
        "nmsd_flow_sequence_resets_total",
        "Sequence numbers that went backwards (exporter restart, reordering)."
    );
    c!(
        "nmsd_flow_exporter_lost_flows_total",
        "Flows missing per sequence numbers, per exporter (v5, IPFIX)."
    );
    c!(
        "nmsd_flow_exporter_lost_datagrams_total",
        "Export datagrams missing per sequence numbers, per exporter (v9)."
    );
    c!(
        "nmsd_flow_exporter_sequence_resets_total",
        "Sequence resets per exporter."
    );
    h!("nmsd_flow_batch_records", "Flow records per decoded batch.");
    c!(
        "nmsd_rollup_forced_flushes_total",
        "Roll-up windows emitted early because max_keys was reached."
    );
    g!("nmsd_rollup_open_keys", "Roll-up keys held open.");
    g!(
        "nmsd_sink_queue_capacity_messages",
        "Capacity of a sink queue, in messages."
    );
    g!(
        "nmsd_sink_queue_occupancy_messages",
        "Messages waiting in a sink queue."
    );
    c!(
        "nmsd_sink_queue_dropped_rows_total",
        "Rows dropped because a sink queue was full or its sink stopped."
    );
    c!(
        "nmsd_sink_rows_written_total",
        "Rows a sink wrote, by table."
    );
    c!(
        "nmsd_sink_rows_failed_total",
        "Rows a sink could not write: rejected by the server or lost at shutdown."
    );
    c!(
        "nmsd_sink_retries_total",
        "Failed sink requests that were retried."
    );
    h!(
        "nmsd_sink_flush_duration_seconds",
        "Time to flush one batch to a sink."
    );
    g!("nmsd_sink_up", "1 when the sink's last request succeeded.");
    g!(
        "nmsd_build_info",
        "1, labelled with the version, git commit and rustc nmsd was built from and with."
    );
    c!(
        "nmsd_snmp_requests_total",
        "SNMP requests sent (retries included)."
    );
    c!("nmsd_snmp_responses_total", "SNMP responses accepted.");
    c!(
        "nmsd_snmp_timeouts_total",
        "SNMP request attempts that timed out."
    );
    c!(
        "nmsd_snmp_retries_total",
        "SNMP requests resent after a timeout."
    );
    c!(
        "nmsd_snmp_varbinds_total",
        "Varbinds received in accepted responses."
    );
    c!(
        "nmsd_snmp_replies_dropped_total",
        "Replies dropped: late, unexpected source, undecodable, failed authentication."
    );
    c!(
        "nmsd_snmp_usm_reports_total",
        "SNMPv3 USM reports received, by kind."
    );
    g!(
        "nmsd_snmp_requests_in_flight",
        "SNMP requests waiting for an answer."
    );
    c!(
        "nmsd_snmp_polls_total",
        "Device polls by outcome (ok, failed, overrun)."
    );
    h!(
        "nmsd_snmp_poll_duration_seconds",
        "Time from the start of a device poll to its end."
    );
    c!(
        "nmsd_snmp_rate_dropped_total",
        "Interface rates left out, by reason (first poll, restart, reset...)."
    );
    c!(
        "nmsd_snmp_device_errors_total",
        "Failed device polls by error kind."
    );
    // The trap receiver's counters (nmsd_snmp::traps) are described here with the rest:
    // `promtool check metrics` refuses a family without HELP.
    c!(
        "nmsd_snmp_traps_received_total",
        "Traps and informs accepted, by SNMP version."
    );
    c!(
        "nmsd_snmp_traps_dropped_total",
        "Traps and informs dropped, by reason (decode, community, unknown_user, authentication, \
         decryption, not_in_time_window, unknown_engine_id, not_a_notification)."
    );
    c!(
        "nmsd_snmp_informs_answered_total",
        "Informs acknowledged with a Response PDU."
    );
}
