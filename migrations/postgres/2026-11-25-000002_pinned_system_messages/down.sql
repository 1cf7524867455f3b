DROP INDEX chatstore_messages_system;
