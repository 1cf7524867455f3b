DROP INDEX messages_system;
