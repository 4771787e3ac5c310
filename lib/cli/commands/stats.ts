import { Io } from '../io';
export const usage = 'todo';
export async function run(_a: string[], _io: Io): Promise<number> { return 1; }
