# backstop.sieve: Dovecot Pigeonhole Sieve, "execute" form.
# Tested through dovecot-lda with Dovecot 2.3.19 and Pigeonhole 0.5.19
# (Debian 12, packages dovecot-core and dovecot-sieve) and with Dovecot 2.4.1
# (Debian 13): the script is the same for both.
#
# Set up as in dovecot.conf (Dovecot 2.3) or dovecot-2.4.conf (Dovecot 2.4),
# next to this file: the sieve_extprograms plugin,
# the vnd.dovecot.execute extension, and a program directory holding a
# symlink named "backstop" to /usr/bin/backstop:
#   mkdir -p /usr/lib/dovecot/sieve-execute
#   ln -s /usr/bin/backstop /usr/lib/dovecot/sieve-execute/backstop
#   mkdir -p /etc/dovecot/sieve
#   cp backstop.sieve /etc/dovecot/sieve/ && sievec /etc/dovecot/sieve/backstop.sieve
#
# "backstop check --format word" prints one word, with no newline (so that
# string :is matches): clean, legit-bounce, backscatter or unverified-bounce.
# It reads the config of the mail user (~/.config/backstop/config.yaml;
# Dovecot passes HOME), and learns the envelope from the SENDER and RECIPIENT
# variables that Dovecot sets. "execute" is false when backstop fails (exit
# status other than 0): then nothing happens here and the message goes on to
# the next script or the inbox. Nothing here reads an X-Backstop field, which
# the sender may have written.
#
# Dovecot hands the program the message with CRLF line ends, and kills it
# after sieve_execute_exec_timeout (10 s by default).
#
# This script files backscatter and unverified bounces, as "backstop deliver"
# does by default. It does not read the config's "actions:"; the other form,
# backstop-filter.sieve, does.

require ["vnd.dovecot.execute", "variables", "fileinto", "mailbox"];

if execute :pipe :output "verdict" "backstop" ["check", "--format", "word"]
{
  if string :is "${verdict}" ["backscatter", "unverified-bounce"]
  {
    # :create makes the folder on first use.
    fileinto :create "Backscatter";
    stop;
  }
}
