# Sourced by the milter harnesses (tests/hosts/milter.sh, tests/hosts/milter-fleet.sh,
# benches/process/milter-bench.sh): the configuration of a private Postfix instance.

# postfix_instance DIR PORT HOSTNAME DOMAIN MILTERS: writes DIR/etc/main.cf and master.cf of
# an instance whose spool and data live under DIR, listening on 127.0.0.1:PORT only, relaying
# for 127.0.0.0/8, with MILTERS (a smtpd_milters value, maybe empty) asked with
# milter_default_action = accept. It logs to DIR/maillog. The caller appends what differs
# (where mail goes, the milter timeouts) to DIR/etc/main.cf.
postfix_instance() {
  local pf=$1 port=$2 host=$3 domain=$4 milters=$5
  mkdir -p "$pf/etc" "$pf/spool" "$pf/data"
  cat >"$pf/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $pf/spool
data_directory = $pf/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = $host
mydomain = $domain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
smtputf8_enable = no
smtpd_milters = $milters
milter_default_action = accept
milter_connect_timeout = 5s
maillog_file = $pf/maillog
maillog_file_prefixes = ${T:-$pf}
CONF
  cat >"$pf/etc/master.cf" <<CONF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
}
