# bash completion for nmsd
_nmsd() {
    local cur prev
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "run check-config lab replay version help --help --version" -- "$cur"))
        return
    fi
    case "$prev" in
        -c|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    case "${COMP_WORDS[1]}" in
        run) COMPREPLY=($(compgen -W "-c --config" -- "$cur")) ;;
        check-config) COMPREPLY=($(compgen -f -- "$cur")) ;;
        lab) COMPREPLY=($(compgen -W "--questdb --control --flows --rate --agent-port --dir" -- "$cur")) ;;
        replay) COMPREPLY=($(compgen -f -W "--speed --exporter --active-timeout --idle-timeout --tcp-close-timeout --max-flows" -- "$cur")) ;;
    esac
}
complete -F _nmsd nmsd
