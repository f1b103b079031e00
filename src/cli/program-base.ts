/** The CLI's program with its help texts, built from the families an entry has (commands/registrar.ts). */
import { Command } from 'commander';
import { XENO_VERSION } from '../common/version.js';
import type { Registrar } from './commands/registrar.js';
import { completions } from './complete.js';
import { exampleText, exitCodesText } from './examples.js';

/** `only`: a command word; when a family has that command, only that family is registered. */
export function buildProgramWith(registerCommands: Registrar, only?: string): Command {
  const program = new Command('xeno')
    .description('xeno: manage virtual machines the Xen way (xm/xl commands), talking to xenod')
    .version(XENO_VERSION)
    .option('-s, --socket <path>', "xenod's socket (default $XENO_SOCKET or /run/xeno/xenod.sock)")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  program.hook('preAction', (cmd) => {
    const sock = cmd.optsWithGlobals<{ socket?: string }>().socket;
    if (sock) process.env.XENO_SOCKET = sock;
  });
  registerCommands(program, only);
  program
    .command('__complete', { hidden: true })
    .argument('<cword>')
    .argument('[words...]')
    .action(async (cword: string, words: string[]) => {
      for (const c of await completions(program, Number(cword), words)) process.stdout.write(c + '\n');
    });
  for (const c of program.commands) {
    c.exitOverride();
    c.addHelpText('after', exampleText(c.name()));
  }
  program.addHelpText('after', `${exitCodesText()}\n\`xeno help CMD\` shows a command's options and examples; \`xm\` is the same program.\n`);
  return program;
}

