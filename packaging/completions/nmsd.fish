# fish completion for nmsd
complete -c nmsd -f
complete -c nmsd -n __fish_use_subcommand -a run -d 'run the collector'
complete -c nmsd -n __fish_use_subcommand -a check-config -d 'check a config file and exit'
complete -c nmsd -n __fish_use_subcommand -a lab -d 'run the collector with a simulated network'
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
