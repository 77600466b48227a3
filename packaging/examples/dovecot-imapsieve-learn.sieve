# Dovecot IMAPSieve: hand each message saved into the Sent folder (an IMAP
# APPEND or COPY by the mail program) to "backstop learn", which records its
# Message-ID in the ledger of sent mail (see dovecot-imapsieve-learn.conf for
# Dovecot 2.3, dovecot-2.4-imapsieve-learn.conf for 2.4; the script is the
# same for both).
#
# Install as /etc/dovecot/sieve/backstop-learn.sieve, compile it with
#   sievec /etc/dovecot/sieve/backstop-learn.sieve
# and link backstop into the pipe program directory:
#   mkdir -p /usr/lib/dovecot/sieve-pipe
#   ln -s /usr/bin/backstop /usr/lib/dovecot/sieve-pipe/backstop
# learn runs as the mail user; a failure is logged by Dovecot, and the copy in
# Sent is kept either way (learn never changes a message). The cron recipe
# (cron-learn) over the same folder catches anything missed.
require ["vnd.dovecot.pipe"];

pipe "backstop" ["learn"];
