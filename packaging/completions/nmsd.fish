# fish completion for nmsd
complete -c nmsd -f
complete -c nmsd -n __fish_use_subcommand -a run -d 'run the collector'
complete -c nmsd -n __fish_use_subcommand -a check-config -d 'check a config file and exit'
complete -c nmsd -n __fish_use_subcommand -a version -d 'print the version'
complete -c nmsd -n __fish_use_subcommand -a help -d 'print the usage'
complete -c nmsd -n '__fish_seen_subcommand_from run' -s c -l config -r -F -d 'config file'
complete -c nmsd -n '__fish_seen_subcommand_from check-config' -F
