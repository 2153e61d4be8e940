# fish completion for nmsd
complete -c nmsd -f
complete -c nmsd -n __fish_use_subcommand -a run -d 'run the collector'
complete -c nmsd -n __fish_use_subcommand -a check-config -d 'check a config file and exit'
complete -c nmsd -n __fish_use_subcommand -a lab -d 'run the collector with a simulated network'
complete -c nmsd -n __fish_use_subcommand -a replay -d 'print the flows of a pcap or pcapng file'
complete -c nmsd -n __fish_use_subcommand -a version -d 'print the version'
complete -c nmsd -n __fish_use_subcommand -a help -d 'print the usage'
complete -c nmsd -n '__fish_seen_subcommand_from run' -s c -l config -r -F -d 'config file'
complete -c nmsd -n '__fish_seen_subcommand_from check-config' -F
complete -c nmsd -n '__fish_seen_subcommand_from lab' -l questdb -r -d 'QuestDB URL'
complete -c nmsd -n '__fish_seen_subcommand_from lab' -l control -r -d 'control address'
complete -c nmsd -n '__fish_seen_subcommand_from lab' -l flows -r -d 'flow listen address'
complete -c nmsd -n '__fish_seen_subcommand_from lab' -l rate -r -d 'flows per second'
complete -c nmsd -n '__fish_seen_subcommand_from lab' -l agent-port -r -d 'SNMP agent port'
complete -c nmsd -n '__fish_seen_subcommand_from lab' -l dir -r -F -d 'lab directory'
complete -c nmsd -n '__fish_seen_subcommand_from replay' -F
complete -c nmsd -n '__fish_seen_subcommand_from replay' -l speed -r -a 'file recorded' -d 'read speed'
complete -c nmsd -n '__fish_seen_subcommand_from replay' -l exporter -r -d 'exporter address'
complete -c nmsd -n '__fish_seen_subcommand_from replay' -l active-timeout -r -d 'active timeout'
complete -c nmsd -n '__fish_seen_subcommand_from replay' -l idle-timeout -r -d 'idle timeout'
complete -c nmsd -n '__fish_seen_subcommand_from replay' -l tcp-close-timeout -r -d 'TCP close timeout'
complete -c nmsd -n '__fish_seen_subcommand_from replay' -l max-flows -r -d 'flow table size'
